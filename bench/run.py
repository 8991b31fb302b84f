"""`make bench`: Check throughput, handler stages, engine scaling, HTTP via Envoy; the report."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from types import FrameType

from bench import (
    detection,
    engine,
    envoybench,
    h2load,
    identitybench,
    maskbench,
    payloadbench,
    placement,
    profile,
    report,
    stages,
    throughput,
    tracingbench,
)
from bench.procs import ROOT, BenchError, Cores

DOC = ROOT / "docs" / "benchmarks.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--rounds", type=int, default=3, help="rounds of benchmarks 1 and 4 (default 3)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per h2load run")
    p.add_argument("--warmup", type=float, default=1.0, help="h2load warm-up seconds per run")
    p.add_argument("--clients", type=int, default=4, help="h2load connections (default 4)")
    p.add_argument("--streams", type=int, default=10, help="h2load streams per connection")
    p.add_argument("--no-deny", action="store_true", help="skip the deny-request run")
    p.add_argument("--skip-throughput", action="store_true", help="skip benchmark 1")
    p.add_argument("--skip-engine", action="store_true", help="skip benchmarks 2 and 3")
    p.add_argument("--skip-envoy", action="store_true", help="skip benchmark 4 (through Envoy)")
    p.add_argument(
        "--skip-identity", action="store_true", help="skip benchmark 6 (JWT and Redis limits)"
    )
    p.add_argument(
        "--skip-payload", action="store_true", help="skip benchmark 7 (payload guardrails)"
    )
    p.add_argument("--skip-tracing", action="store_true", help="skip benchmark 8 (tracing)")
    p.add_argument("--skip-masking", action="store_true", help="skip benchmark 9 (masking)")
    p.add_argument("--envoy-seconds", type=float, default=5.0, help="seconds per Envoy run")
    p.add_argument("--rate", type=int, default=500, help="fixed rate through Envoy (req/s)")
    p.add_argument(
        "--rate-seconds",
        type=float,
        default=15.0,
        help="seconds per fixed-rate run through Envoy (a p99 needs samples: 15 s at 500 req/s "
        "is 7,500 requests, so the 75 slowest make it)",
    )
    p.add_argument(
        "--placement",
        choices=placement.CHOICES,
        default=placement.CHOICES[0],
        help="benchmark 4's CPUs: split = the Check server alone on one CPU, Envoy + upstream + "
        "h2load on the other (default); shared = all servers on one CPU, h2load on the other",
    )
    p.add_argument("--routes", type=int, default=10_000, help="size of the large policy set")
    p.add_argument("--repeats", type=int, default=7, help="engine repetitions (best is kept)")
    p.add_argument("--profile", action="store_true", help="also py-spy the real server")
    p.add_argument("--no-write", action="store_true", help=f"do not rewrite {DOC.name}")
    return p


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers, so servers get stopped


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.rounds < 1 or args.seconds <= 0 or args.clients < 1 or args.streams < 1:
        parser.error("--rounds, --seconds, --clients and --streams must be positive")
    if args.routes < 10 or args.repeats < 1:
        parser.error("--routes must be at least 10 and --repeats at least 1")
    if args.envoy_seconds <= 0 or args.rate_seconds <= 0 or args.rate < 1:
        parser.error("--envoy-seconds, --rate-seconds and --rate must be positive")


def _through_envoy(args: argparse.Namespace, cores: Cores) -> envoybench.EnvoyReport:
    where = placement.Placement.pick(args.placement, cores)
    print(f"4. HTTP through Envoy ({where.describe()})", flush=True)
    load = h2load.Load(args.clients, args.streams, args.envoy_seconds, args.warmup)
    return envoybench.run(load, args.rate, args.rate_seconds, args.rounds, where)


@dataclass(slots=True)
class _Results:
    """What the benchmarks that ran measured (None: skipped)."""

    tp: throughput.ThroughputReport | None = None
    prof: profile.Profile | None = None
    stages: list[tuple[str, float]] | None = None
    engines: list[engine.EngineResult] | None = None
    envoy: envoybench.EnvoyReport | None = None
    ident: identitybench.IdentityReport | None = None
    pay: payloadbench.PayloadReport | None = None
    trace: tracingbench.TracingReport | None = None
    mask: dict[str, float] | None = None


def _measure(args: argparse.Namespace, cores: Cores, load: h2load.Load) -> _Results:
    """Run every benchmark not skipped, in order."""
    r = _Results()
    # Short, so first: after minutes of the load below this shared machine runs slower for a
    # while (masking the `contacts` body took 2.11 ms before a full run, 3.39 ms in its last
    # minute, 2.61 ms right after it and 2.15 ms a minute later), and this figure is not a
    # ratio to a side measured at the same moment.
    if not args.skip_masking:
        print("9. masking a 64 KB JSON response", flush=True)
        r.mask = maskbench.run_fresh()
    if not args.skip_throughput:
        print(f"1. throughput ({cores.describe()})", flush=True)
        r.tp = throughput.run(load, args.rounds, cores, with_deny=not args.no_deny)
    if args.profile:
        print("5. profiling the real server with py-spy", flush=True)
        r.prof = profile.run(load, cores)
    if not args.skip_engine:
        print("2. Check handler stages, in-process", flush=True)
        r.stages = stages.measure(ROOT / "policies")
        print("3. policy engine", flush=True)
        r.engines = engine.bench_sizes([10, args.routes], iterations=150, repeats=args.repeats)
        for e in r.engines:
            print(f"  {e.routes:>6} routes: {e.us_per_decision:.1f} µs/decision", flush=True)
    if not args.skip_envoy:
        r.envoy = _through_envoy(args, cores)
    if not args.skip_identity:
        print(f"6. JWT and Redis-limited Checks ({cores.describe()})", flush=True)
        r.ident = identitybench.run(load, args.rounds, cores)
    if not args.skip_payload:
        print(f"7. payload guardrails ({cores.describe()})", flush=True)
        r.pay = payloadbench.run(load, args.rounds, cores)
    if not args.skip_tracing:
        print(f"8. tracing on vs off ({cores.describe()})", flush=True)
        r.trace = tracingbench.run(load, args.rounds, cores)
    return r


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the report and write it to docs/benchmarks.md."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    command = shlex.join(
        [sys.executable, "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]
    )
    cores = Cores.pick()
    tool_version = "h2load not used"
    uses_h2load = not (
        args.skip_throughput
        and args.skip_envoy
        and args.skip_identity
        and args.skip_payload
        and args.skip_tracing
    )
    if uses_h2load or args.profile:
        try:
            tool_version = h2load.version(h2load.ensure_h2load())
        except BenchError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 1
    machine = report.machine(tool_version)  # before pinning: `nproc` honours this process's mask
    if cores.client is not None:
        os.sched_setaffinity(0, {cores.client})  # keep this process off the server's core
    load = h2load.Load(args.clients, args.streams, args.seconds, args.warmup)
    try:
        r = _measure(args, cores, load)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    section = report.render(
        machine,
        command,
        r.tp,
        r.stages,
        r.engines,
        args.repeats,
        r.prof,
        r.envoy,
        r.ident,
        r.pay,
        r.trace,
        r.mask,
    )
    print()
    print(section)
    if not args.no_write:
        report.write_section(DOC, section)
        print(f"wrote {DOC.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
        detection.main([])  # the detectors' rates on the labelled corpus: docs/detection.md
    return 0


if __name__ == "__main__":
    sys.exit(main())
