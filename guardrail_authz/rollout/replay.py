"""Replay: re-evaluate recorded audit decisions against a candidate policy set and compare."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from guardrail_authz.audit import (
    MAX_PATH,
    MAX_QUERY,
    REDACTED,
    TRUNCATED,
    SecretHeaders,
    mutations,
)
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import BadRequestError, RequestView
from guardrail_authz.policy.snapshot import CompiledRoute, PolicySnapshot
from guardrail_authz.policy.source import MatchOp
from guardrail_authz.rollout.bundle import load_source
from guardrail_authz.rollout.replay_report import (
    Example,
    Group,
    Malformed,
    ReplayResult,
    Verdict,
    change_kind,
    comparable_mutations,
    monitored,
)

# Why a record is not re-evaluated (docs/audit.md, "Replay").
NOT_CAPTURED = "not_captured"  # recorded before request capture: no headers
INTERNAL_ERROR = "internal_error"  # the recorded decision was an internal error
RATE_LIMITED = "rate_limited"  # a rate-limit answer: limits are not replayed
TRUNCATED_REQUEST = "truncated"  # path or query longer than the record keeps
BODY_INSPECTED = "body_inspected"  # a body was sent and the candidate route inspects it
JWT_IDENTITY = "jwt_identity"  # a bearer token (not recorded) decides who the caller is
REDACTED_INPUT = "redacted_input"  # a candidate rule reads a redacted or truncated value
MAX_MALFORMED_KEPT = 1000  # malformed lines listed (all are counted)
_PRESENCE = (MatchOp.PRESENT, MatchOp.ABSENT)  # conditions a redacted value still answers


class ReplayError(Exception):
    """The audit log cannot be read at all."""


def load_candidate(path: Path, keys: Sequence[Path] = ()) -> PolicySnapshot:
    """Compile a candidate (directory or bundle; PolicyLoadError if it does not) and let the
    recorded `sha256:` API-key digests authenticate as the keys themselves would."""
    snapshot, _ = load_source(path, keys)
    prime_key_digests(snapshot)
    return snapshot


def prime_key_digests(snapshot: PolicySnapshot) -> None:
    """Enter 'sha256:<digest>' for every key into the policies' presented-key caches (this
    snapshot is replay's own: a served snapshot must never learn these)."""
    for policy in snapshot.compiled_policies:
        for digest, entry in policy.keys.items():
            policy.presented["sha256:" + digest.lower()] = entry


def read_log(path: Path) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    """(line number, record or Malformed) for each non-blank line; ReplayError if the file
    cannot be opened (a line that cannot be read is Malformed, never an exception)."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"cannot read audit log {path}: {exc.strerror or exc}") from None
    with stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, Malformed(number, "not UTF-8")
                continue
            except ValueError as exc:
                yield number, Malformed(number, f"not JSON ({exc})")
                continue
            if not isinstance(record, dict):
                yield number, Malformed(number, "not a JSON object")
                continue
            yield number, record


def replay_file(path: Path, snapshot: PolicySnapshot, examples: int = 3) -> ReplayResult:
    """Replay every decision record of an audit log file."""
    return replay(read_log(path), snapshot, examples)


def replay(
    lines: Iterable[tuple[int, dict[str, Any] | Malformed]],
    snapshot: PolicySnapshot,
    examples: int = 3,
) -> ReplayResult:
    """Re-evaluate each decision record against `snapshot` and tally what would change."""
    result = ReplayResult(snapshot.version)
    secrets = SecretHeaders(snapshot.api_key_headers, snapshot.secret_headers)
    for number, record in lines:
        if isinstance(record, Malformed):
            _malformed(result, record)
            continue
        event = record.get("event")
        if event != "decision":
            if not isinstance(event, str):
                _malformed(result, Malformed(number, "not an audit record (no event)"))
            else:
                result.other_events[event] += 1
            continue
        problem = _problem(record)
        if problem is not None:
            _malformed(result, Malformed(number, problem))
            continue
        result.read += 1
        try:
            _replay_one(record, snapshot, secrets, result, examples)
        except Exception as exc:  # noqa: BLE001 - one odd record must not end the replay
            result.read -= 1
            _malformed(result, Malformed(number, f"cannot be replayed ({exc!r})"))
    return result


def _malformed(result: ReplayResult, line: Malformed) -> None:
    result.malformed_count += 1
    if len(result.malformed) < MAX_MALFORMED_KEPT:
        result.malformed.append(line)


def _replay_one(
    record: dict[str, Any],
    snapshot: PolicySnapshot,
    secrets: SecretHeaders,
    result: ReplayResult,
    examples: int,
) -> None:
    reason = _unreplayable(record)
    if reason is not None:
        result.not_reevaluable[reason] += 1
        return
    view = view_of(record)
    route = _route(snapshot, view)
    reason = None if route is None else _unreplayable_on(record, view, route)
    if reason is not None:
        result.not_reevaluable[reason] += 1
        return
    decision = evaluate(snapshot, view, str(record["decision_id"]))
    if decision.credential == "jwt":  # it read a token from what the record holds of one
        result.not_reevaluable[JWT_IDENTITY] += 1
        return
    result.replayed += 1
    before, after = _recorded(record), _candidate(decision)
    recorded_mutations = (
        comparable_mutations(record["mutations"]) if "mutations" in record else None
    )
    candidate_mutations = comparable_mutations(
        mutations(decision, secrets) if decision.allowed else {}
    )
    kind = change_kind(before, after, recorded_mutations, candidate_mutations)
    if kind is None:
        result.unchanged += 1
        return
    result.changed[kind] += 1
    cause = after.rule or after.reason
    key = (kind, before.route or "", after.route or "", cause)
    group = result.groups.get(key)
    if group is None:
        group = result.groups[key] = Group(kind, before.route, after.route, cause)
    group.count += 1
    if len(group.examples) < examples:
        shown = (recorded_mutations or {}, candidate_mutations) if kind == "mutations" else None
        group.examples.append(
            Example(
                str(record["decision_id"]),
                _text(record.get("time")),
                _text(record.get("method")),
                view.raw_path,  # with the (redacted) query
                _text(record.get("principal")),
                before,
                after,
                shown,
            )
        )


def view_of(record: dict[str, Any]) -> RequestView:
    """The request of a record, as far as it was recorded (the body never is)."""
    query = record.get("query")
    path = str(record.get("path") or "")
    return RequestView(
        method=str(record.get("method") or "GET"),
        raw_path=f"{path}?{query}" if query else path,
        host=str(record.get("host") or ""),
        headers=dict(record.get("headers") or {}),
        port=int(record.get("port") or 0),
        source_principal=str(record.get("source_principal") or ""),
        request_id=str(record.get("request_id") or ""),
    )


def _problem(record: dict[str, Any]) -> str | None:
    """Why a decision record cannot be used, or None."""
    if not isinstance(record.get("decision_id"), str):
        return "decision record without a decision_id"
    if record.get("outcome") not in ("allow", "deny"):
        return "decision record without an outcome of allow or deny"
    status = record.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        return "decision record without an integer status"
    headers = record.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        return "headers is not an object of strings"
    for name in ("method", "path", "query", "host", "source_principal", "request_id"):
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is not a string"
    for name in ("port", "body_bytes"):
        value = record.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{name} is not an integer"
    return None


def _unreplayable(record: dict[str, Any]) -> str | None:
    """What keeps a record from being re-evaluated, whatever the candidate."""
    if record.get("headers") is None or record.get("path") is None:
        return NOT_CAPTURED
    status, reason = record["status"], record.get("reason")
    if status == 500 or reason in ("internal_error", "internal_error_fail_open"):
        return INTERNAL_ERROR
    if status == 429 or reason == "rate_limit_unavailable":
        return RATE_LIMITED
    if len(record["path"]) >= MAX_PATH or len(record.get("query") or "") >= MAX_QUERY:
        return TRUNCATED_REQUEST
    return None


def _route(snapshot: PolicySnapshot, view: RequestView) -> CompiledRoute | None:
    try:
        return snapshot.index.lookup(view.host, view.port, view.segments, view.method)
    except BadRequestError:
        return None  # evaluation refuses the path as it did when recorded


def _unreplayable_on(record: dict[str, Any], view: RequestView, route: CompiledRoute) -> str | None:
    """What keeps a record from being re-evaluated on the route the candidate matched."""
    if route.payload is not None and int(record.get("body_bytes") or 0) > 0:
        return BODY_INSPECTED
    headers: dict[str, str] = record["headers"]
    jwt = route.policy.jwt
    if route.uses_identity and jwt is not None:
        if record.get("credential") == "jwt":
            return JWT_IDENTITY
        if record.get("credential") != "api_key":  # a key, when valid, is tried first
            inputs = list(jwt.credential_headers)
            if any(s.cookie is not None for s in jwt.sources):
                inputs.append("cookie")
            if any(headers.get(h) == REDACTED for h in inputs):
                return JWT_IDENTITY
    for rule in (*route.deny_rules, *route.allow_rules):
        for cond in rule.headers:
            if cond.op not in _PRESENCE and _hidden(headers.get(cond.name)):
                return REDACTED_INPUT
        for cond in rule.query:
            if cond.op not in _PRESENCE and _hidden(view.query_param(cond.name)):
                return REDACTED_INPUT
    return None


def _hidden(value: str | None) -> bool:
    """A recorded value that is not the value sent: redacted, hashed or truncated."""
    if value is None:
        return False
    return value == REDACTED or value.endswith(TRUNCATED) or value.startswith("sha256:")


def _recorded(record: dict[str, Any]) -> Verdict:
    return Verdict(
        str(record["outcome"]),
        int(record["status"]),
        str(record.get("reason") or ""),
        _text(record.get("rule")),
        _text(record.get("route")),
        monitored(record.get("would_deny")),
    )


def _candidate(d: Decision) -> Verdict:
    found = monitored([w.to_json() for w in d.monitored])
    return Verdict("allow" if d.allowed else "deny", d.status, d.reason, d.rule, d.route, found)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
