"""The audit trail: one JSON line per decision, written in batches every few milliseconds."""

from __future__ import annotations

import asyncio
import hashlib
import json.encoder
import logging
import re
import time
from _json import make_encoder
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson

from guardrail_authz.audit_chain import (
    CHECKPOINT_EVERY,
    CHECKPOINT_SECONDS,
    DEFAULT_KEEP,
    ChainedOutput,
)
from guardrail_authz.cpuload import SATURATED, CpuLoad
from guardrail_authz.engine.decision import DECISION_ID_HEADER, Decision
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import ALWAYS_SECRET_HEADERS

log = logging.getLogger(__name__)
_esc = json.encoder.encode_basestring_ascii  # the C escaper: quotes and escapes one string


def _unencodable(value: object) -> object:
    raise TypeError(f"not JSON: {type(value).__name__}")


# The C encoder, made once: JSONEncoder.encode builds one per call, which costs as much as
# encoding a record's headers. No circular-reference markers: records are trees.
_encoder = make_encoder(None, _unencodable, _esc, None, ":", ",", False, False, True)
_dumps = orjson.dumps

REDACTED = "[redacted]"
TRUNCATED = "\u2026[truncated]"
MAX_HEADER_VALUE = 1024
MAX_QUERY = 2048
MAX_PATH = 512
MAX_KNOWN_NAMES = 4096  # header names remembered as classified, per set of secret names
# Header names that look like credentials whatever the policies say (searched lower-case);
# the API-key-like ones are hashed, the others redacted.
_SECRET_NAME = re.compile(r"token|secret|password|session|api[-_]?key|cookie|authorization")
_API_KEY_NAME = re.compile(r"api[-_]?key")
# Query parameters whose names look like credentials (lower-case): their values are redacted.
_SECRET_PARAM = re.compile(r"token|key|secret|passw(?:or)?d|pwd|auth|session|sig|code")
# Headers whose value is a URL with a query string (redacted like the request's own query).
URL_HEADERS = frozenset({":path", "referer", "x-envoy-original-path"})
_HASH, _REDACT, _URL = 1, 2, 3


@dataclass(frozen=True, slots=True)
class SecretHeaders:
    """The header names an audit record hashes (API keys) or redacts (other credentials).

    Which names of a request need work is found with two set operations: every header name
    seen is classified once (a word search) and remembered, up to MAX_KNOWN_NAMES names."""

    api_key: frozenset[str]
    secret: frozenset[str]
    known: set[str] = field(default_factory=set, compare=False, repr=False)
    flagged: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def handling(self, name: str) -> int:
        """0 to record the header as it is, or how to record it (_HASH, _REDACT, _URL)."""
        low = name.lower()
        if low in self.api_key:
            return _HASH
        if low in self.secret:
            return _REDACT
        if low in URL_HEADERS:
            return _URL
        if _SECRET_NAME.search(low) is None:
            return 0
        return _HASH if _API_KEY_NAME.search(low) else _REDACT

    def to_change(self, headers: dict[str, str]) -> dict[str, int]:
        """The names of `headers` whose values are not recorded as they are, with how."""
        known, flagged = self.known, self.flagged
        if known.issuperset(headers):  # the common case: two C-level set operations
            return {name: flagged[name] for name in flagged.keys() & headers.keys()}
        found = {}
        for name in headers:
            how = flagged.get(name, 0) if name in known else self.handling(name)
            if how:
                found[name] = how
            if name not in known and len(known) < MAX_KNOWN_NAMES:
                known.add(name)
                if how:
                    flagged[name] = how
        return found


DEFAULT_SECRETS = SecretHeaders(frozenset({"x-api-key"}), frozenset(ALWAYS_SECRET_HEADERS))


# Digests of the API keys seen last (a few callers present the same keys over and over), held
# in memory only, like the evaluator's own cache of presented keys.
_digests: dict[str, str] = {}
MAX_KNOWN_KEYS = 1024


def key_digest(value: str) -> str:
    """How an API key is recorded: 'sha256:' and the hex digest policies store for it."""
    digest = _digests.get(value)
    if digest is None:
        if len(_digests) >= MAX_KNOWN_KEYS:
            _digests.clear()
        digest = _digests[value] = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return digest


def redact_query(query: str) -> str:
    """A query string with the values of secret-looking parameters redacted, capped."""
    if "%" not in query and _SECRET_PARAM.search(query.lower()) is None:
        return query[:MAX_QUERY]  # the common case: one C-level scan, nothing to redact
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and _SECRET_PARAM.search((unquote_plus(name) if "%" in name else name).lower()):
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)[:MAX_QUERY]


def _redact_url(url: str) -> str:
    mark = url.find("?")
    if mark < 0:
        return url
    query, hash_, fragment = url[mark + 1 :].partition("#")
    redacted = redact_query(query)
    return url if redacted == query else f"{url[:mark]}?{redacted}{hash_}{fragment}"


def redact_headers(headers: Mapping[str, str], secrets: SecretHeaders) -> dict[str, str]:
    """Headers as recorded: API keys hashed, other credentials redacted, values capped."""
    # A comprehension reads a protobuf map in about two thirds of the time dict() takes.
    out = dict(headers) if type(headers) is dict else {name: headers[name] for name in headers}
    if out:
        _redact(out, secrets)
    return out


def _redact(out: dict[str, str], secrets: SecretHeaders) -> dict[str, str]:
    """redact_headers on a dict of our own, in place."""
    for name, how in secrets.to_change(out).items():
        value = out[name]
        if how == _HASH:
            out[name] = key_digest(value)
        elif how == _URL:
            out[name] = _redact_url(value)
        else:
            out[name] = REDACTED
    if max(map(len, out.values())) > MAX_HEADER_VALUE:
        for name, value in out.items():
            if len(value) > MAX_HEADER_VALUE:
                out[name] = value[:MAX_HEADER_VALUE] + TRUNCATED
    return out


def mutations(d: Decision, secrets: SecretHeaders) -> dict[str, Any]:
    """An allow's mutations as recorded (and compared by replay): the non-empty parts, the
    decision id header left out, credential-looking values hashed or redacted."""
    out: dict[str, Any] = {}
    sets = {n: v for n, v, _ in d.upstream_headers_set if n != DECISION_ID_HEADER}
    if sets:
        out["set"] = _redact(sets, secrets)
    if d.upstream_headers_remove:
        out["remove"] = list(d.upstream_headers_remove)
    if d.response_headers_add:
        out["response"] = _redact({n: v for n, v, _ in d.response_headers_add}, secrets)
    if d.query_set:
        out["query_set"] = {
            n: REDACTED if _SECRET_PARAM.search(n.lower()) else v for n, v in d.query_set
        }
    if d.query_remove:
        out["query_remove"] = list(d.query_remove)
    return out


def encode(value: dict[str, Any]) -> str:
    """A JSON object as compact ASCII text, by the C encoder."""
    return "".join(_encoder(value, 0))


def _ascii(record: dict[str, Any]) -> str:
    """`record` as compact ASCII JSON text: by orjson when its output is printable ASCII (as
    it nearly always is: it does not escape other characters), else by the C encoder, which
    escapes them. orjson takes about a tenth of the time; both write the same JSON."""
    try:
        out = _dumps(record)
    except TypeError:  # what orjson refuses (a lone surrogate, a 65-bit integer): the C encoder
        return encode(record)
    if out.isascii() and b"\x7f" not in out:
        return out.decode("ascii")
    return encode(record)


class _Clock:
    """RFC 3339 UTC timestamps with millisecond precision; the seconds part is cached."""

    __slots__ = ("_milli", "_prefix", "_second", "_stamp")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._milli = -1
        self._stamp = ""

    def stamp(self, t: float) -> str:
        """The timestamp for time.time() value t."""
        milli = int(t * 1000)
        if milli == self._milli:  # decisions of one batch often share their millisecond
            return self._stamp
        self._milli = milli
        second = milli // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._stamp = f"{self._prefix}.{milli - second * 1000:03d}Z"
        return self._stamp


def render(
    d: Decision,
    view: RequestView | None,
    seconds: float,
    now: str,
    secrets: SecretHeaders = DEFAULT_SECRETS,
) -> str:
    """One decision as a JSON line. Only fields named here are written, and credentials never
    in clear: API-key headers are hashed, other secret headers and secret-looking query
    parameters redacted, bodies not recorded (docs/audit.md)."""
    record: dict[str, Any] = {
        "time": now,
        "event": "decision",
        "decision_id": d.decision_id,
        "policy_version": d.policy_version,
        "policy": d.policy,
        "route": d.route,
        "action": d.action,
        "principal": d.principal,
        "outcome": "allow" if d.allowed else "deny",
        "status": d.status,
        "reason": d.reason,
        "reasons": d.reasons,
        "rule": d.rule,
    }
    if view is not None:
        record["method"] = view.method
        record["host"] = view.host
        record["path"] = view.raw_path.split("?", 1)[0][:MAX_PATH]
        record["source_principal"] = view.source_principal or None
        record["request_id"] = view.request_id or None
        record["body_bytes"] = len(view.body)
        if d.actions:
            record["actions"] = d.actions
        record["port"] = view.port
        _, mark, query = view.raw_path.partition("?")
        if mark:
            query = query.partition("#")[0]
            if query:
                record["query"] = redact_query(query)
        record["headers"] = redact_headers(view.headers, secrets)
    else:
        record.update(method=None, host=None, path=None, source_principal=None)
        record.update(request_id=None, body_bytes=0)
        if d.actions:
            record["actions"] = d.actions
        record["port"] = None
    record["credential"] = d.credential
    record["enforced"] = not d.monitored
    if d.monitored:
        record["would_deny"] = [w.to_json() for w in d.monitored]
    if d.allowed:
        record["mutations"] = mutations(d, secrets)
    return f'{_ascii(record)[:-1]},"latency_ms":{seconds * 1000:.3f}}}\n'


FLUSH_INTERVAL = 0.02
QUIET = 0.001


class AuditLog:
    """Collects decisions and writes their lines in batches: once no decision was recorded
    for QUIET seconds (between bursts of Checks), at the latest `flush_interval` seconds after
    the first unwritten one, always then while the process is CPU-bound (at once outside an
    event loop, and on close). A write per decision cost more than deciding (bench/); a batch
    bounds what a crash could lose.

    Lines are rendered when the batch is written, not per Check: rendering many in one loop
    keeps the renderer warm in the CPU caches and costs a third of rendering each one between
    gRPC calls (bench/stages.py, docs/benchmarks.md). A queued decision holds its Decision and
    RequestView, which nothing changes after evaluation.

    Each line carries `seq` and `prev` (the hash of the line before it), added per batch;
    checkpoint lines open, punctuate, rotate and close the chain (audit_chain.py,
    docs/audit.md, `guardrail-authz audit verify`).
    """

    def __init__(
        self,
        path: Path | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        *,
        max_bytes: int = 0,
        keep: int = DEFAULT_KEEP,
        key: bytes | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        cpu_share: float = SATURATED,
    ) -> None:
        self._interval = flush_interval
        self._queued: list[tuple[Decision, RequestView | None, float, float]] = []
        self._scheduled = False
        self._last = 0.0  # time.perf_counter() of the last decision recorded
        self._due = 0.0  # when the unwritten decisions must be written at the latest
        self._clock = _Clock()
        self._load = CpuLoad(cpu_share)  # above this share of a CPU, batches wait the interval
        self._secrets = DEFAULT_SECRETS
        # Told (seconds per record, records) after each batch is rendered and written; the
        # server observes it as the `audit` stage of guardrail_stage_seconds.
        self.on_flush: Callable[[float, int], None] | None = None
        # Lines are hash-chained (audit_chain.py); a file rotates past max_bytes (0: never).
        self._out = ChainedOutput(
            path,
            self._clock.stamp,
            key=key,
            max_bytes=max_bytes,
            keep=keep,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
        )

    def set_secret_headers(
        self, api_key_headers: frozenset[str], secret_headers: frozenset[str]
    ) -> None:
        """Name the headers to hash (API keys) and redact (other credentials) from now on;
        called after every policy load. Queued records are rendered with the names current
        when they are written."""
        self._secrets = SecretHeaders(
            frozenset(h.lower() for h in api_key_headers),
            frozenset(h.lower() for h in secret_headers),
        )

    def record(self, d: Decision, view: RequestView | None, seconds: float) -> None:
        """Queue one decision; its line is written once no decision was recorded for QUIET
        seconds, and at the latest `flush_interval` after the first unwritten one (always
        then while the process is CPU-bound)."""
        now = time.perf_counter()
        self._last = now
        self._queued.append((d, view, seconds, time.time()))
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (offline use): write now
            self.flush()
            return
        self._due = now + self._interval
        if self._load.busy(now):  # CPU-bound: Checks queue anyway, batches render cheapest
            loop.call_later(self._interval, self.flush)
        else:
            loop.call_later(min(QUIET, self._interval), self._flush_when_quiet)
        self._scheduled = True

    def _flush_when_quiet(self) -> None:
        """Flush, unless decisions are still being recorded and the interval is not over:
        then look again once QUIET has passed since the last one. Checks arrive in bursts
        (Envoy passes on its clients' bursts); rendering a batch in the middle of one would
        hold up every Check behind it, rendering it after costs no Check any time."""
        if not self._scheduled:  # flushed meanwhile (close, reopen)
            return
        now = time.perf_counter()
        if now - self._last < QUIET and now < self._due:
            wait = min(self._last + QUIET, self._due) - now
            asyncio.get_running_loop().call_later(wait, self._flush_when_quiet)
            return
        self.flush()

    def flush(self) -> None:
        """Render and write every queued decision."""
        self._scheduled = False
        queued = self._queued
        if queued:
            began = time.perf_counter()
            count = len(queued)
            stamp = self._clock.stamp
            secrets = self._secrets
            try:
                lines = [
                    render(d, view, seconds, stamp(t), secrets) for d, view, seconds, t in queued
                ]
            except Exception:  # noqa: BLE001 - one bad record must not cost the batch the rest
                lines = [self._render_one(*item) for item in queued]
            queued.clear()
            self._out.write(lines)  # chained there: hashing is per batch, not per Check
            if self.on_flush is not None:
                self.on_flush((time.perf_counter() - began) / count, count)

    def _render_one(self, d: Decision, view: RequestView | None, seconds: float, t: float) -> str:
        try:
            return render(d, view, seconds, self._clock.stamp(t), self._secrets)
        except Exception:
            log.exception("audit record for decision %r could not be rendered", d.decision_id)
            return (
                f'{{"time":"{self._clock.stamp(t)}","event":"decision_unrenderable",'
                f'"decision_id":{_esc(str(d.decision_id))}}}\n'
            )

    def reopen(self) -> None:
        """Write what is queued, then continue the chain in a new file at the same path (for
        an external rotation that moved the file, then sent SIGHUP)."""
        self.flush()
        self._out.reopen()

    def close(self) -> None:
        """Flush, write the stop checkpoint and close a file sink."""
        self.flush()
        self._out.close()
