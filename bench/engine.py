"""The policy engine alone: µs per decision (RequestView + evaluate) at 10 and 10,000 routes."""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.checkreq import BASE_HEADERS
from bench.policygen import Probe, probes, write_directory
from bench.procs import BenchError
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.snapshot import PolicySnapshot

MIX = 40  # requests in the fixed mix, spread over the whole index


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Timing of one policy-set size."""

    routes: int
    us_per_decision: float  # best of `repeats`
    us_all_reps: tuple[float, ...]
    load_seconds: float  # load_directory: read + YAML parse + compile
    stage_seconds: dict[str, float]
    mix: int
    iterations: int
    allowed: int


def _check_mix(snapshot: PolicySnapshot, mix: list[Probe]) -> int:
    """Every probe must get its expected outcome and route, else the timing would be meaningless."""
    for p in mix:
        view = RequestView(
            method=p.method,
            raw_path=p.path,
            host=p.host,
            headers=p.headers,
            source_principal=p.source_principal,
        )
        d = evaluate(snapshot, view, "bench-check")
        if d.allowed != p.allowed or d.route != p.route:
            raise BenchError(
                f"engine probe {p.method} {p.host}{p.path}: expected allowed={p.allowed} "
                f"route={p.route}, got allowed={d.allowed} route={d.route} ({d.reason})"
            )
    return sum(p.allowed for p in mix)


def time_mix(
    snapshot: PolicySnapshot, mix: list[Probe], iterations: int, repeats: int
) -> list[float]:
    """µs per decision for each repetition of `iterations` passes over the mix."""
    args = [(p.method, p.path, p.host, p.headers, p.source_principal) for p in mix]
    ids = [f"bench-{k:06d}" for k in range(len(args))]
    out: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            for (method, path, host, headers, source), did in zip(args, ids, strict=True):
                view = RequestView(
                    method=method,
                    raw_path=path,
                    host=host,
                    headers=headers,
                    source_principal=source,
                )
                evaluate(snapshot, view, did)
        out.append((time.perf_counter_ns() - start) / 1000 / (iterations * len(args)))
    return out


@dataclass(slots=True)
class _Loaded:
    routes: int
    snapshot: PolicySnapshot
    mix: list[Probe]
    load_seconds: float
    allowed: int


def _load(n_routes: int) -> _Loaded:
    """Generate n routes as YAML files, load them and check the mix's outcomes."""
    with tempfile.TemporaryDirectory(prefix=f"bench-policies-{n_routes}-") as tmp:
        directory = write_directory(n_routes, Path(tmp))
        start = time.perf_counter()
        snapshot = load_directory(directory)
        load_seconds = time.perf_counter() - start
    if snapshot.route_count != n_routes:
        raise BenchError(f"expected {n_routes} routes, snapshot has {snapshot.route_count}")
    mix = probes(n_routes, BASE_HEADERS, MIX)
    return _Loaded(n_routes, snapshot, mix, load_seconds, _check_mix(snapshot, mix))


def bench_sizes(sizes: list[int], iterations: int, repeats: int) -> list[EngineResult]:
    """Load every size, then time them in alternation, one repetition of each in turn, so a
    slow period of this shared machine (other guests' cache and memory traffic) lands on
    all sizes alike rather than on whichever ran then."""
    loaded = [_load(n) for n in sizes]
    for one in loaded:
        time_mix(one.snapshot, one.mix, max(1, iterations // 10), 1)  # warm-up
    # As the server does after every load: the snapshots leave the collector's passes, so
    # no full collection walking the 10,000-route set's objects lands in a repetition.
    gc.collect()
    gc.freeze()
    reps: list[list[float]] = [[] for _ in loaded]
    try:
        for _ in range(repeats):
            for one, out in zip(loaded, reps, strict=True):
                out.extend(time_mix(one.snapshot, one.mix, iterations, 1))
    finally:
        gc.unfreeze()
    return [
        EngineResult(
            one.routes,
            min(out),
            tuple(out),
            one.load_seconds,
            dict(one.snapshot.stage_seconds),
            len(one.mix),
            iterations,
            one.allowed,
        )
        for one, out in zip(loaded, reps, strict=True)
    ]
