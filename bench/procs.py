"""Start benchmark servers pinned to one core, wait until they listen, and always stop them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY = re.compile(r"ready: grpc=(\S+):(\d+)")
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


class BenchError(Exception):
    """A benchmark could not run as specified; the message says why."""


@dataclass(frozen=True, slots=True)
class Cores:
    """Which CPU runs the server under test and which runs the load generator."""

    server: int | None
    client: int | None

    @classmethod
    def pick(cls) -> Cores:
        """Two distinct cores when there are two, else no pinning at all."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(cpus[0], cpus[1])

    def prefix(self, core: int | None) -> list[str]:
        """`taskset -c N` when pinning, so every thread the process starts stays on that core."""
        return [] if core is None else ["taskset", "-c", str(core)]

    def describe(self) -> str:
        """Human-readable pinning, for the report."""
        if self.server is None:
            return "not pinned (fewer than 2 CPUs or no taskset)"
        return f"server on CPU {self.server}, h2load on CPU {self.client} (taskset -c)"


@dataclass(slots=True)
class Server:
    """A running server process and where it listens."""

    name: str
    command: list[str]
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all threads), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        """Raise BenchError with the server's log tail when it has exited."""
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")


@contextmanager
def running(
    name: str, command: list[str], log: Path, ready: re.Pattern[str] = READY
) -> Iterator[Server]:
    """Start a server, yield it once `ready` (last group = port) matches its log; always stop it."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
    try:
        server = Server(name, command, proc, _wait_ready(name, proc, log, ready), log)
        yield server
        server.check_alive()
    finally:
        stop(proc)


def _wait_ready(name: str, proc: subprocess.Popen[bytes], log: Path, ready: re.Pattern[str]) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = ready.search(log.read_text(errors="replace"))
        if found:
            return int(found.group(found.re.groups))
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{name} exited with {proc.returncode} before listening:\n{tail}")
        time.sleep(0.05)
    raise BenchError(f"{name} printed no ready line within {START_TIMEOUT:.0f}s (log: {log})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def python() -> str:
    """The interpreter running the bench (servers run under the same one)."""
    return sys.executable
