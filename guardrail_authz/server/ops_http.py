"""The ops HTTP endpoint: /healthz, /readyz and /metrics on a small asyncio server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder

log = logging.getLogger(__name__)
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OpsHttp:
    """Answers liveness, readiness (with the latest reload error) and Prometheus scrapes."""

    def __init__(self, holder: SnapshotHolder, metrics: Metrics) -> None:
        self.holder = holder
        self.metrics = metrics
        self.draining = False

    def readiness(self) -> tuple[int, bytes]:
        """200 once a valid policy set serves (and not draining), else 503; body explains."""
        snap = self.holder.snapshot
        failure = self.holder.last_failure
        ready = snap is not None and not self.draining
        body = {
            "ready": ready,
            "draining": self.draining,
            "policy_version": snap.version if snap else None,
            "routes": snap.route_count if snap else 0,
            "last_reload_error": list(failure.errors) if failure else None,
        }
        return (200 if ready else 503), json.dumps(body, indent=1).encode() + b"\n"

    def route(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            status, body = self.readiness()
            return status, "application/json", body
        if path == "/metrics":
            return 200, PROMETHEUS_TYPE, self.metrics.render()
        return 404, "text/plain", b"not found\n"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (Connection: close)."""
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return
            status, ctype, body = self.route(parts[0], parts[1])
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if parts[0] == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
