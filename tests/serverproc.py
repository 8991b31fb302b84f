"""Start the real `guardrail-authz serve` as a subprocess on free ports, for integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import grpc

from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2 as ea
from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2_grpc as ea_grpc

_READY = re.compile(r"guardrail-authz ready: grpc=\S+:(\d+) http=\S+:(\d+)")


class ServerProcess:
    """A running server; stderr is collected, ports are read from its ready line."""

    def __init__(
        self,
        policies: Path,
        audit_log: Path,
        *,
        reload_interval: float = 0.2,
        grace: float = 5,
        grpc_addr: str = "127.0.0.1:0",
        extra: list[str] | None = None,
    ) -> None:
        self.policies = policies
        self.audit_log = audit_log
        cmd = [
            sys.executable, "-m", "guardrail_authz", "serve",
            "--policies", str(policies),
            "--grpc", grpc_addr,
            "--http", "127.0.0.1:0",
            "--audit-log", str(audit_log),
            "--reload-interval", str(reload_interval),
            "--grace", str(grace),
            *(extra or []),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
        )
        self.stderr_lines: list[str] = []
        self._ready = threading.Event()
        self.grpc_port = 0
        self.http_port = 0
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("server did not start:\n" + self.stderr())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = ea_grpc.AuthorizationStub(self.channel)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            m = _READY.search(line)
            if m:
                self.grpc_port, self.http_port = int(m.group(1)), int(m.group(2))
                self._ready.set()

    def stderr(self) -> str:
        """Everything the server logged so far."""
        return "".join(self.stderr_lines)

    def check(self, req: ea.CheckRequest, timeout: float = 5) -> ea.CheckResponse:
        """One Check RPC."""
        return self.stub.Check(req, timeout=timeout)

    def http(self, path: str) -> tuple[int, str]:
        """GET on the ops endpoint: (status, body)."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def wait_for(self, predicate: str, timeout: float = 10) -> None:
        """Wait until /readyz's body contains a substring."""
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            _, body = self.http("/readyz")
            if predicate in body:
                return
            time.sleep(0.05)
        raise AssertionError(f"/readyz never contained {predicate!r}; last body: {body}")

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._pumper.join(5)
        self._keep_stderr()
        return code

    def _keep_stderr(self) -> None:
        """Leave what the server logged beside its audit log, for the secrets scan
        (tests/test_zz_no_secrets_in_logs.py)."""
        path = self.audit_log.parent / f"server-{self.proc.pid}.stderr"
        path.write_text(self.stderr(), encoding="utf-8")

    def stop(self) -> None:
        """Stop however necessary."""
        stop_process(self.proc)
        self._pumper.join(5)
        self._keep_stderr()
        if hasattr(self, "channel"):
            self.channel.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def check_request(
    method: str = "GET",
    path: str = "/",
    host: str = "shop.example",
    headers: dict[str, str] | None = None,
    source_principal: str = "",
    port: int = 8080,
) -> ea.CheckRequest:
    """A CheckRequest shaped like Envoy's."""
    req = ea.CheckRequest()
    http = req.attributes.request.http
    http.method = method
    http.path = path
    http.host = host
    http.protocol = "HTTP/1.1"
    http.headers[":authority"] = host
    http.headers[":method"] = method
    http.headers[":path"] = path
    for k, v in (headers or {}).items():
        http.headers[k] = v
    req.attributes.source.principal = source_principal
    req.attributes.destination.address.socket_address.address = "127.0.0.1"
    req.attributes.destination.address.socket_address.port_value = port
    return req
