"""Sample the real server's Check path with py-spy while h2load drives it (`--profile`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import h2load
from bench.checkreq import allow_request, grpc_frame
from bench.procs import ROOT, BenchError, Cores, python, running

_LINE = re.compile(r":\d+\)$")
TOP = 25
RATE = 100  # samples per second


@dataclass(frozen=True, slots=True)
class Profile:
    """Where the event-loop thread spent its samples, with µs per RPC at the profiled rate."""

    command: str
    rps: float
    samples: int
    seconds: int
    rows: list[tuple[str, float, float]]  # (function, share of main-thread samples, µs per RPC)


def _frame(name: str) -> str:
    return _LINE.sub(")", name.strip())


def _parse(raw: str) -> tuple[Counter[str], int]:
    """Inclusive samples per function (line numbers dropped) of the main thread."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or "_run_module_as_main" not in stack:  # main thread only
            continue
        n = int(count)
        total += n
        for name in {_frame(f) for f in frames}:
            inclusive[name] += n
    return inclusive, total


def run(load: h2load.Load, cores: Cores) -> Profile:
    """Start the real server, load it, record py-spy samples for `load.seconds`, summarise."""
    spy = shutil.which("py-spy") or str(Path(python()).with_name("py-spy"))
    if not Path(spy).exists():
        raise BenchError("py-spy not found: `pip install py-spy` into the bench's environment")
    tool = h2load.ensure_h2load()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        data = work / "allow.grpc"
        data.write_bytes(grpc_frame(allow_request()))
        real_cmd = [
            *cores.prefix(cores.server),
            python(),
            *("-m", "guardrail_authz", "serve", "--policies", str(ROOT / "policies")),
            *("--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--grace", "1"),
            *("--audit-log", str(work / "audit.jsonl")),
        ]
        with running("guardrail-authz", real_cmd, work / "real.log") as server:
            argv = h2load.command(tool, server.port, data, load, cores)
            out = work / "pyspy.raw"
            seconds = max(1, int(load.seconds) - 1)
            spy_cmd = [
                *cores.prefix(cores.client),
                spy,
                *("record", "--pid", str(server.proc.pid), "--rate", str(RATE)),
                *("--duration", str(seconds), "--format", "raw"),
                *("--output", str(out)),
            ]
            with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as load_proc:
                try:
                    subprocess.run(
                        spy_cmd, capture_output=True, check=True, timeout=load.seconds + 30
                    )
                    stdout, _ = load_proc.communicate(timeout=load.seconds + load.warmup + 30)
                finally:
                    if load_proc.poll() is None:
                        load_proc.kill()
            found = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", stdout)
            if not found:
                raise BenchError(f"h2load output not understood:\n{stdout}")
            rps = float(found.group(1))
            inclusive, total = _parse(out.read_text())
    if not total:
        raise BenchError("py-spy recorded no samples of the main thread")
    # n samples at RATE Hz = n / RATE s of main-thread time, spread over rps * seconds RPCs.
    us_per_sample = 1e6 / RATE / (rps * seconds) if rps else 0.0
    rows = [
        (name, n / total, n * us_per_sample)
        for name, n in inclusive.most_common()
        if n / total < 0.95  # drop the frames every sample has (runpy, asyncio.run, ...)
    ][:TOP]
    return Profile(" ".join(spy_cmd), rps, total, seconds, rows)
