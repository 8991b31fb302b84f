"""The audit trail: one JSON line per decision, written in batches every few milliseconds."""

from __future__ import annotations

import asyncio
import json.encoder
import sys
import time
from pathlib import Path
from typing import TextIO

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView

_esc = json.encoder.encode_basestring_ascii  # the C escaper: quotes and escapes one string


def _s(value: str | None) -> str:
    return "null" if value is None else _esc(value)


class _Clock:
    """RFC 3339 UTC timestamps with millisecond precision; the seconds part is cached."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


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
    """Collects decision lines and writes them in batches: at most `flush_interval` seconds
    after the first unwritten line (at once outside an event loop, and on close). A write per
    decision cost more than deciding (bench/); a batch bounds what a crash could lose."""

    def __init__(self, path: Path | None = None, flush_interval: float = FLUSH_INTERVAL) -> None:
        self._interval = flush_interval
        self._file: TextIO = (
            path.open("a", encoding="utf-8", buffering=1 << 16) if path is not None else sys.stdout
        )
        self._owned = path is not None
        self._lines: list[str] = []
        self._scheduled = False
        self._clock = _Clock()

    def record(self, d: Decision, view: RequestView | None, seconds: float) -> None:
        """Queue one decision's line; it is written within the flush interval."""
        self._lines.append(render(d, view, seconds, self._clock.now()))
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_later(self._interval, self.flush)
            self._scheduled = True
        except RuntimeError:  # no event loop (offline use): write now
            self.flush()

    def flush(self) -> None:
        """Write every queued line."""
        self._scheduled = False
        if self._lines:
            self._file.write("".join(self._lines))
            self._lines.clear()
            self._file.flush()

    def close(self) -> None:
        """Flush and close a file sink."""
        self.flush()
        if self._owned:
            self._file.close()
