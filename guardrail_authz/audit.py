"""The audit trail: one JSON line per decision, secrets redacted before anything is written."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView

SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api_key",
        "apikey",
        "password",
        "token",
        "secret",
        "body",
    }
)
REDACTED = "[REDACTED]"


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, recursively."""
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SECRET_KEYS else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
        elif isinstance(event[key], dict | list):
            event[key] = redact(event[key])
    return event


class AuditLog:
    """Writes decision records as JSON lines to stdout or a file."""

    def __init__(self, path: Path | None = None) -> None:
        self._file: TextIO = (
            path.open("a", encoding="utf-8", buffering=1) if path is not None else sys.stdout
        )
        self._owned = path is not None
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
                _redact_processor,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def record(self, d: Decision, view: RequestView | None, seconds: float) -> None:
        """Write one decision (the request's query string and headers are never logged)."""
        self._log.info(
            "decision",
            decision_id=d.decision_id,
            policy_version=d.policy_version,
            policy=d.policy,
            route=d.route,
            action=d.action,
            principal=d.principal,
            outcome="allow" if d.allowed else "deny",
            status=d.status,
            reason=d.reason,
            reasons=d.reasons,
            rule=d.rule,
            method=view.method if view else None,
            host=view.host if view else None,
            path=view.raw_path.split("?", 1)[0][:512] if view else None,
            source_principal=(view.source_principal or None) if view else None,
            request_id=(view.request_id or None) if view else None,
            body_bytes=len(view.body) if view else 0,
            latency_ms=round(seconds * 1000, 3),
        )

    def close(self) -> None:
        """Flush and close a file sink."""
        self._file.flush()
        if self._owned:
            self._file.close()
