"""h2load GETs through Envoy, at saturation or a fixed rate: req/s, p50/p99 and CPU shares."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from bench import h2load
from bench.checkreq import READER_KEY
from bench.placement import OTHER, STEAL, CpuMeter, Placement
from bench.procs import BenchError

PATH = "/api/orders/42"
HEADERS = {"x-api-key": READER_KEY}


@dataclass(frozen=True, slots=True)
class Run:
    """One h2load run against one Envoy set-up."""

    setup: str  # "a", "b" or "c"
    rate: int | None  # target req/s; None = saturation
    command: str
    summary: h2load.Summary
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]  # share of one CPU per process group; "other cpuN", "steal cpuN"

    def steal(self) -> float:
        """The largest share of a server CPU that the hypervisor stole during the run."""
        return max((v for k, v in self.cpu.items() if k.startswith(STEAL)), default=0.0)

    def foreign(self, load_cpu: int | None) -> float:
        """The largest share of a CPU without h2load that went to other processes."""
        skip = f"{OTHER}{load_cpu}"
        return max(
            (v for k, v in self.cpu.items() if k.startswith(OTHER) and k != skip), default=0.0
        )


def percentile(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..1) of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def command(
    tool: str, port: int, load: h2load.Load, rate: int | None, log: Path, where: Placement
) -> list[str]:
    """h2c (prior knowledge) GETs of PATH with the reader key; --rps splits `rate` over clients."""
    argv = [
        *where.pin(where.load),
        tool,
        f"--duration={load.seconds:g}",
        f"--warm-up-time={load.warmup:g}",
        f"--clients={load.clients}",
        f"--max-concurrent-streams={load.streams}",
        "--threads=1",
        f"--log-file={log}",
        *(f"--header={k}: {v}" for k, v in HEADERS.items()),
    ]
    if rate is not None:
        argv.append(f"--rps={rate / load.clients:g}")
    return [*argv, f"http://127.0.0.1:{port}{PATH}"]


def run(
    tool: str,
    setup: str,
    port: int,
    load: h2load.Load,
    rate: int | None,
    log: Path,
    where: Placement,
    meter: CpuMeter,
) -> Run:
    """One timed run; its per-request latencies come from h2load's --log-file (main phase only)."""
    log.unlink(missing_ok=True)  # h2load appends
    argv = command(tool, port, load, rate, log, where)
    meter.start()
    wall0 = time.monotonic()
    summary = h2load.invoke(argv, load.seconds + load.warmup + 30)
    cpu = meter.shares(time.monotonic() - wall0)
    for server in meter.servers:
        server.check_alive()
    ordered = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines())
    if not ordered or len(ordered) != summary.done:
        raise BenchError(f"h2load logged {len(ordered)} latencies for {summary.done} requests")
    p50, p99 = (percentile(ordered, q) / 1000 for q in (0.5, 0.99))
    return Run(setup, rate, " ".join(argv), summary, p50, p99, cpu)
