"""The audit trail: one JSON line per decision, written in batches every few milliseconds."""

from __future__ import annotations

import asyncio
import json.encoder
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView

log = logging.getLogger(__name__)
_esc = json.encoder.encode_basestring_ascii  # the C escaper: quotes and escapes one string


def _s(value: str | None) -> str:
    return "null" if value is None else _esc(value)


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


def render(d: Decision, view: RequestView | None, seconds: float, now: str) -> str:
    """One decision as a JSON line. Only fields named here are written: never headers,
    query strings or bodies, so credentials cannot reach the audit log."""
    if view is not None:
        path = view.raw_path.split("?", 1)[0][:512]
        req = (
            f'"method":{_esc(view.method)},"host":{_esc(view.host)},"path":{_esc(path)},'
            f'"source_principal":{_s(view.source_principal or None)},'
            f'"request_id":{_s(view.request_id or None)},"body_bytes":{len(view.body)}'
        )
    else:
        req = '"method":null,"host":null,"path":null,"source_principal":null,"request_id":null'
        req += ',"body_bytes":0'
    reasons = ",".join(_esc(r) for r in d.reasons)
    if d.actions:
        req += ',"actions":[' + ",".join(_esc(a) for a in d.actions) + "]"
    return (
        f'{{"time":"{now}","event":"decision","decision_id":{_esc(d.decision_id)},'
        f'"policy_version":{_esc(d.policy_version)},"policy":{_s(d.policy)},'
        f'"route":{_s(d.route)},"action":{_s(d.action)},"principal":{_s(d.principal)},'
        f'"outcome":"{"allow" if d.allowed else "deny"}","status":{d.status},'
        f'"reason":{_esc(d.reason)},"reasons":[{reasons}],"rule":{_s(d.rule)},'
        f'{req},"latency_ms":{seconds * 1000:.3f}}}\n'
    )


FLUSH_INTERVAL = 0.02


class AuditLog:
    """Collects decisions and writes their lines in batches: at most `flush_interval` seconds
    after the first unwritten one (at once outside an event loop, and on close). A write per
    decision cost more than deciding (bench/); a batch bounds what a crash could lose.

    Lines are rendered when the batch is written, not per Check: rendering many in one loop
    keeps the renderer warm in the CPU caches and costs a third of rendering each one between
    gRPC calls (bench/stages.py, docs/benchmarks.md). A queued decision holds its Decision and
    RequestView, which nothing changes after evaluation.
    """

    def __init__(self, path: Path | None = None, flush_interval: float = FLUSH_INTERVAL) -> None:
        self._interval = flush_interval
        self._file: TextIO = (
            path.open("a", encoding="utf-8", buffering=1 << 16) if path is not None else sys.stdout
        )
        self._owned = path is not None
        self._queued: list[tuple[Decision, RequestView | None, float, float]] = []
        self._scheduled = False
        self._clock = _Clock()

    def record(self, d: Decision, view: RequestView | None, seconds: float) -> None:
        """Queue one decision; its line is written within the flush interval."""
        self._queued.append((d, view, seconds, time.time()))
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_later(self._interval, self.flush)
            self._scheduled = True
        except RuntimeError:  # no event loop (offline use): write now
            self.flush()

    def flush(self) -> None:
        """Render and write every queued decision."""
        self._scheduled = False
        queued = self._queued
        if queued:
            stamp = self._clock.stamp
            try:
                lines = [render(d, view, seconds, stamp(t)) for d, view, seconds, t in queued]
            except Exception:  # noqa: BLE001 - one bad record must not cost the batch the rest
                lines = [self._render_one(*item) for item in queued]
            queued.clear()
            self._file.write("".join(lines))
            self._file.flush()

    def _render_one(self, d: Decision, view: RequestView | None, seconds: float, t: float) -> str:
        try:
            return render(d, view, seconds, self._clock.stamp(t))
        except Exception:
            log.exception("audit record for decision %r could not be rendered", d.decision_id)
            return (
                f'{{"time":"{self._clock.stamp(t)}","event":"decision_unrenderable",'
                f'"decision_id":{_esc(str(d.decision_id))}}}\n'
            )

    def close(self) -> None:
        """Flush and close a file sink."""
        self.flush()
        if self._owned:
            self._file.close()
