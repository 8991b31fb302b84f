"""Find (or install) h2load, drive gRPC Check load with it and parse its summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.checkreq import CHECK_PATH
from bench.procs import BenchError, Cores, Server

APT_PACKAGE = "nghttp2-client"
_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@dataclass(frozen=True, slots=True)
class Load:
    """How hard to push: h2load clients (connections), streams per connection, seconds."""

    clients: int
    streams: int
    seconds: float
    warmup: float


@dataclass(frozen=True, slots=True)
class Summary:
    """The counts h2load prints at the end of one run."""

    rps: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int

    def clean(self) -> bool:
        """Every request finished, succeeded and got a 2xx."""
        bad = self.failed + self.errored + self.timeout + self.status_other
        return self.done > 0 and bad == 0 and self.status_2xx == self.done


@dataclass(frozen=True, slots=True)
class Result:
    """One h2load run against one server."""

    server: str
    command: str
    summary: Summary
    server_cpu: float  # share of one core the server used during the run (1.0 = saturated)


def ensure_h2load() -> str:
    """Path of h2load; installs nghttp2-client with apt-get when missing and running as root."""
    found = shutil.which("h2load")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(
            f"h2load not found: install it with `sudo apt-get install -y {APT_PACKAGE}` "
            "(Debian/Ubuntu) and run the bench again"
        )
    print(f"h2load not found: apt-get install -y {APT_PACKAGE}", flush=True)
    apt = ["apt-get", "install", "-y", "-q", APT_PACKAGE]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(apt, env=env, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, timeout=300)
        done = subprocess.run(
            apt, env=env, capture_output=True, text=True, check=False, timeout=300
        )
    found = shutil.which("h2load")
    if done.returncode != 0 or not found:
        raise BenchError(f"could not install {APT_PACKAGE}:\n{done.stderr[-2000:]}")
    return found


def version(h2load: str) -> str:
    """`h2load --version`, e.g. 'h2load nghttp2/1.52.0'."""
    out = subprocess.run([h2load, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def command(h2load: str, port: int, data: Path, load: Load, cores: Cores) -> list[str]:
    """The h2load command line for gRPC unary calls of the framed request in `data`."""
    return [
        *cores.prefix(cores.client),
        h2load,
        f"--duration={load.seconds:g}",
        f"--warm-up-time={load.warmup:g}",
        f"--clients={load.clients}",
        f"--max-concurrent-streams={load.streams}",
        "--threads=1",
        f"--data={data}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        f"http://127.0.0.1:{port}{CHECK_PATH}",
    ]


def invoke(argv: list[str], budget: float) -> Summary:
    """Run one h2load command line and parse its summary; BenchError when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=budget)
    except subprocess.TimeoutExpired:
        raise BenchError(f"h2load did not finish within {budget:.0f}s: {' '.join(argv)}") from None
    out = done.stdout
    finished, reqs, status = _FINISHED.search(out), _REQUESTS.search(out), _STATUS.search(out)
    if done.returncode != 0 or not (finished and reqs and status):
        raise BenchError(f"h2load failed ({done.returncode}): {' '.join(argv)}\n{out}{done.stderr}")
    _total, _started, n_done, ok, failed, errored, timeout = (int(g) for g in reqs.groups())
    s2, s3, s4, s5 = (int(g) for g in status.groups())
    return Summary(float(finished.group(3)), n_done, ok, failed, errored, timeout, s2, s3 + s4 + s5)


def run(h2load: str, server: Server, data: Path, load: Load, cores: Cores) -> Result:
    """Drive one timed run; raises BenchError when h2load fails or its output is unexpected."""
    argv = command(h2load, server.port, data, load, cores)
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    s = invoke(argv, load.seconds + load.warmup + 30)
    cpu, wall = server.cpu_seconds() - cpu0, time.monotonic() - wall0
    server.check_alive()
    return Result(server.name, " ".join(argv), s, cpu / wall)
