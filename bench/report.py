"""Machine facts and the Markdown results section that `bench.run` puts in docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import __version__ as protobuf_version
from google.protobuf.internal import api_implementation

from bench import docsection, envoyreport, identitybench, maskbench, payloadbench, tracingbench
from bench.engine import EngineResult
from bench.envoybench import EnvoyReport
from bench.identitybench import IdentityReport
from bench.payloadbench import PayloadReport
from bench.profile import Profile
from bench.stages import REPEATS
from bench.throughput import ThroughputReport
from bench.tracingbench import TracingReport

START = "<!-- bench:results:start (written by `python -m bench.run`; edits below are lost) -->"
END = "<!-- bench:results:end -->"
THROUGHPUT_TARGET = 0.8
ENGINE_TARGET = 1.3


@dataclass(frozen=True, slots=True)
class Machine:
    """What the figures were measured on."""

    date: str
    nproc: str
    cpu: str
    kernel: str
    python: str
    grpcio: str
    protobuf: str
    h2load: str
    loadavg: str


def machine(h2load_version: str) -> Machine:
    """Collect the machine facts (nproc as the `nproc` command prints it)."""
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(len(os.sched_getaffinity(0)))
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return Machine(
        dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        nproc,
        cpu,
        f"{platform.system()} {platform.release()}",
        f"{platform.python_implementation()} {platform.python_version()}",
        grpc.__version__,
        f"{protobuf_version} ({api_implementation.Type()})",
        h2load_version,
        " ".join(f"{x:.2f}" for x in os.getloadavg()),
    )


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _machine_md(m: Machine, command: str) -> list[str]:
    return [
        f"Run {m.date} from the repository root with `{command}`"
        " (`make bench` runs `python -m bench.run` with no options).",
        "",
        "| nproc | CPU | kernel | Python | grpcio | protobuf | load generator "
        "| load avg at start |",
        "|---|---|---|---|---|---|---|---|",
        f"| {m.nproc} | {m.cpu} | {m.kernel} | {m.python} | {m.grpcio} | {m.protobuf} "
        f"| {m.h2load} | {m.loadavg} |",
        "",
    ]


def _throughput_md(t: ThroughputReport) -> list[str]:
    a, b = t.median(0), t.median(1)
    ratio = t.ratio()
    example = t.rounds[0][1].command if t.rounds else ""
    lines = [
        "### 1. Throughput: guardrail-authz (b) vs a no-op Check server (a)",
        "",
        f"- Pinning: {t.cores.describe()}.",
        f"- Load: h2load, {t.load.clients} connections x {t.load.streams} concurrent streams, "
        f"{t.load.seconds:g} s measured after {t.load.warmup:g} s warm-up per run; "
        f"the same {t.request_bytes}-byte CheckRequest (GET /api/orders/42, demo reader key) "
        "to both; runs alternate a/b.",
        f"- (a) `{t.noop_command}`",
        f"- (b) `{t.real_command}`",
        f"- (a') `{t.batched_command}`: the no-op answering through guardrail-authz's "
        "micro-batching, to show how much of (b) is batching rather than deciding",
        f"- h2load (for b): `{example}`",
        "",
        "| round | (a) no-op req/s | (b) guardrail-authz req/s | b/a "
        "| (a') batched no-op req/s | b/a' | server CPU a | server CPU b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, ((ra, rb), rc) in enumerate(zip(t.rounds, t.batched, strict=True), 1):
        lines.append(
            f"| {n} | {ra.summary.rps:.0f} | {rb.summary.rps:.0f} "
            f"| {rb.summary.rps / ra.summary.rps:.2f} "
            f"| {rc.summary.rps:.0f} | {rb.summary.rps / rc.summary.rps:.2f} "
            f"| {ra.server_cpu:.0%} | {rb.server_cpu:.0%} |"
        )
    c = t.batched_median()
    lines += [
        f"| **median** | **{a:.0f}** | **{b:.0f}** | **{ratio:.2f}** | **{c:.0f}** "
        f"| **{b / c:.2f}** | | |",
        "",
        f"Throughput ratio b/a = **{ratio:.2f}** (target >= {THROUGHPUT_TARGET}: "
        f"{_verdict(ratio >= THROUGHPUT_TARGET)}). Per RPC on one core: no-op {1e6 / a:.0f} µs, "
        f"guardrail-authz {1e6 / b:.0f} µs, so deciding, auditing and metering cost "
        f"{1e6 / b - 1e6 / a:.0f} µs per Check on the wire.",
        "",
        f"Against the no-op batched the same way (a'), guardrail-authz reaches {b / c:.2f}: "
        f"batching lowers gRPC's own cost per call (no-op {1e6 / a:.0f} µs → {1e6 / c:.0f} µs), "
        f"and what deciding, auditing and metering add on the wire is {1e6 / b - 1e6 / c:.0f} "
        "µs per Check.",
        "",
    ]
    if t.deny is not None:
        lines += [
            f"Deny case (DELETE /api/orders/42 with the reader key → 403, same load): "
            f"{t.deny.summary.rps:.0f} req/s, {t.deny.summary.rps / a:.2f} of the no-op median.",
            "",
        ]
    lines += ["Checked before and after measuring:", ""]
    lines += [f"- {c}" for c in t.checks]
    lines += ["- every h2load run: 0 failed, 0 errored, 0 timeouts, all responses 2xx", ""]
    return lines


def _stages_md(stages: list[tuple[str, float]]) -> list[str]:
    lines = [
        "### 2. The Check handler's stages, in-process",
        "",
        f"Best of {REPEATS} tight loops over the shipped policies and the same request, no gRPC: a",
        "warm-cache lower bound of what each stage costs inside the server (whose caches are",
        "colder: the per-RPC difference in section 1 is the figure that counts).",
        "",
        "| stage | µs per call |",
        "|---|---|",
    ]
    lines += [f"| {name} | {us:.1f} |" for name, us in stages]
    return [*lines, ""]


def _engine_md(results: list[EngineResult], repeats: int) -> list[str]:
    lines = [
        "### 3. Policy engine alone: RequestView + evaluate()",
        "",
        f"Generated policy sets (distinct literal paths, one- and two-parameter templates, "
        f"prefixes; 3 host patterns; 4 rules per route with principals, roles, source principals "
        f"and header conditions). A fixed mix of {results[0].mix} requests spread over the whole "
        f"index (allow by key, by role, by mTLS source; deny by rule; no rule; no route), "
        f"each outcome checked before timing; {repeats} repetitions of each size, the sizes "
        "alternating, with the loaded sets frozen out of the garbage collector as the server "
        "does; best repetition kept; `time.perf_counter_ns`.",
        "",
        "| routes | µs per decision (best) | all repetitions (µs) | allowed in mix "
        "| load_directory | parse | resolve | normalise | index |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        st = r.stage_seconds
        reps = " ".join(f"{x:.1f}" for x in r.us_all_reps)
        lines.append(
            f"| {r.routes:,} | **{r.us_per_decision:.1f}** | {reps} | {r.allowed}/{r.mix} "
            f"| {r.load_seconds:.2f} s | {st.get('parse', 0):.2f} s | {st.get('resolve', 0):.3f} s "
            f"| {st.get('normalise', 0):.2f} s | {st.get('index', 0):.2f} s |"
        )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        ratio = big.us_per_decision / small.us_per_decision
        paired = statistics.median(
            b / a for a, b in zip(small.us_all_reps, big.us_all_reps, strict=True)
        )
        compile_s = sum(v for k, v in big.stage_seconds.items() if k != "parse")
        lines += [
            "",
            f"Ratio {big.routes:,}/{small.routes:,} routes = **{ratio:.2f}** "
            f"between the best repetitions, **{paired:.2f}** as the median of the ratios of "
            f"repetitions run back to back (target <= {ENGINE_TARGET} by both: "
            f"{_verdict(max(ratio, paired) <= ENGINE_TARGET)}). "
            f"Loading the {big.routes:,}-route set takes {big.load_seconds:.1f} s: "
            f"{big.stage_seconds.get('parse', 0):.1f} s reading and parsing YAML, "
            f"{compile_s:.2f} s compiling (resolve + normalise + index).",
        ]
    return [*lines, ""]


def _profile_md(p: Profile) -> list[str]:
    lines = [
        "### 5. Profile of the real server under load (py-spy, event-loop thread)",
        "",
        f"`{p.command}` while h2load ran at {p.rps:.0f} req/s (sampling slows the server); "
        f"{p.samples} samples of the main thread. Inclusive share and µs per RPC:",
        "",
        "| function | share | µs per RPC |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {share:.1%} | {us:.1f} |" for name, share, us in p.rows]
    return [*lines, ""]


def render(
    m: Machine,
    command: str,
    throughput: ThroughputReport | None,
    stages: list[tuple[str, float]] | None,
    engine: list[EngineResult] | None,
    engine_repeats: int,
    profile: Profile | None,
    envoy: EnvoyReport | None = None,
    identity: IdentityReport | None = None,
    payload: PayloadReport | None = None,
    tracing: TracingReport | None = None,
    masking: dict[str, float] | None = None,
) -> str:
    """The whole results section, markers included."""
    lines = [START, "## Latest results", "", *_machine_md(m, command)]
    if throughput is not None and throughput.rounds:
        lines += _throughput_md(throughput)
    if stages:
        lines += _stages_md(stages)
    if engine:
        lines += _engine_md(engine, engine_repeats)
    if envoy is not None:
        lines += envoyreport.render(envoy)
    if identity is not None:
        lines += identitybench.render(identity)
    if payload is not None:
        lines += payloadbench.render(payload)
    if tracing is not None:
        lines += tracingbench.render(tracing)
    if masking is not None:
        lines += maskbench.render(masking)
    if profile is not None:
        lines += _profile_md(profile)
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace the delimited results section of doc, keeping the hand-written part above it."""
    docsection.write_section(doc, section, START, END, "# Benchmarks")
