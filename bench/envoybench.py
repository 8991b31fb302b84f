"""HTTP through Envoy: no ext_authz (a), ext_authz to the no-op (b), to guardrail-authz (c)."""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import envoyproxy, h2load, httpload
from bench.placement import CpuMeter, Placement
from bench.procs import ROOT, BenchError, python, running

SETUPS = {"a": "no ext_authz", "b": "ext_authz → no-op", "c": "ext_authz → guardrail-authz"}
UPSTREAM_READY = re.compile(r"demo upstream ready: http://(\S+):(\d+)")
AUTHZ_STATS = "http.ingress.ext_authz."
RATE_TOLERANCE = 0.02  # a fixed-rate run that falls further behind its target is flagged
PACED_CLIENTS = 1  # h2load paces each connection alone: several would fire their requests in step


@dataclass(slots=True)
class EnvoyReport:
    """Every run of the three set-ups, in the order they ran, and how they were set up."""

    load: h2load.Load
    rate: int
    paced: h2load.Load
    placement: Placement
    envoy_version: str = ""
    commands: dict[str, str] = field(default_factory=dict)
    runs: list[httpload.Run] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, setup: str, rate: int | None) -> list[httpload.Run]:
        """The runs of one set-up in one mode (rate None = saturation)."""
        return [r for r in self.runs if r.setup == setup and r.rate == rate]

    def median(
        self, setup: str, rate: int | None, metric: Callable[[httpload.Run], float]
    ) -> float:
        """Median over rounds of one figure of one set-up in one mode."""
        return statistics.median(metric(r) for r in self.of(setup, rate))

    def behind(self) -> list[httpload.Run]:
        """Fixed-rate runs that did not reach their target rate."""
        return [r for r in self.runs if r.rate and r.summary.rps < r.rate * (1 - RATE_TOLERANCE)]


def _get(port: int, method: str = "GET") -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 request through Envoy; the status and the headers the upstream echoed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, httpload.PATH, headers=httpload.HEADERS)
        resp = conn.getresponse()
        seen = json.loads(resp.read())["headers"] if resp.status == 200 else {}
    except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
        raise BenchError(f"{method} {httpload.PATH} through Envoy on {port} failed: {exc}") from exc
    finally:
        conn.close()
    return resp.status, {str(k): str(v) for k, v in seen.items()}


def verify(envoys: dict[str, envoyproxy.Envoy]) -> list[str]:
    """Each set-up answers the benchmark request as it should; returns what was checked."""
    for setup in ("a", "b"):
        status, seen = _get(envoys[setup].server.port)
        if status != 200 or "x-guardrail-principal" in seen or "x-api-key" not in seen:
            raise BenchError(f"({setup}) answered {status}, upstream saw {sorted(seen)}")
    status, seen = _get(envoys["c"].server.port)
    if status != 200 or seen.get("x-guardrail-principal") != "reader" or "x-api-key" in seen:
        raise BenchError(f"(c) answered {status}, upstream saw {seen}")
    if "x-guardrail-decision-id" not in seen:
        raise BenchError(f"(c) upstream saw no x-guardrail-decision-id: {seen}")
    denied, _ = _get(envoys["c"].server.port, "DELETE")
    if denied != 403:
        raise BenchError(f"(c) answered DELETE {httpload.PATH} with {denied}, not 403")
    return [
        f"(a) and (b) answer GET {httpload.PATH} with 200; the upstream got x-api-key and no "
        "x-guardrail-* header",
        f"(c) answers GET {httpload.PATH} with 200; the upstream got x-guardrail-principal: reader "
        "and x-guardrail-decision-id, and no x-api-key (stripped by the policy)",
        f"(c) answers DELETE {httpload.PATH} with the reader key with 403",
    ]


def check_after(report: EnvoyReport, envoys: dict[str, envoyproxy.Envoy], audit: Path) -> None:
    """Envoy's ext_authz counters and the audit log agree with what was measured."""
    if envoys["a"].stats(AUTHZ_STATS):
        raise BenchError("(a) has ext_authz statistics: the filter was not removed")
    report.checks.append("(a) Envoy has no ext_authz statistics at all (filter removed)")
    for setup, denials in (("b", 0), ("c", 1)):
        stats = envoys[setup].stats(AUTHZ_STATS)
        measured = sum(r.summary.done for r in report.runs if r.setup == setup)
        ok, denied = stats.get(f"{AUTHZ_STATS}ok", 0), stats.get(f"{AUTHZ_STATS}denied", 0)
        failed = sum(stats.get(f"{AUTHZ_STATS}{k}", 0) for k in ("error", "failure_mode_allowed"))
        if ok < measured or failed or denied != denials:
            raise BenchError(f"({setup}) ext_authz counters off for {measured} requests: {stats}")
        report.checks.append(
            f"({setup}) Envoy counted {ok} ext_authz OKs for {measured} "
            f"measured requests (+ warm-up), 0 errors, {denials} denied"
        )
    measured = sum(r.summary.done for r in report.runs if r.setup == "c")
    audited = sum(1 for _ in audit.open(encoding="utf-8"))
    if audited < measured:
        raise BenchError(f"audit log has {audited} records for {measured} measured requests")
    report.checks.append(f"(c) audit log holds {audited} records for {measured} measured requests")


def _measure(tool: str, setup: str, port: int, rate: int | None, ctx: _Context) -> httpload.Run:
    load = ctx.load if rate is None else ctx.paced
    r = httpload.run(tool, setup, port, load, rate, ctx.log, ctx.where, ctx.meter)
    cpu = " ".join(f"{k}={v:.0%}" for k, v in r.cpu.items())
    mode = "saturation" if rate is None else f"{rate} req/s"
    status = "ok" if r.summary.clean() else "NOT CLEAN"
    print(
        f"  ({setup}) {mode:>11s} {r.summary.rps:7.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
        f"p99 {r.p99_ms:6.2f} ms  {cpu} [{status}]",
        flush=True,
    )
    if not r.summary.clean():
        raise BenchError(
            f"h2load reported failures through Envoy ({setup}): {r.summary}; other load on the "
            f"servers' CPUs during the run: {r.foreign(ctx.where.load):.0%}, steal "
            f"{r.steal():.0%} (a 503 means a Check took longer than the 0.5 s ext_authz timeout)"
        )
    return r


@dataclass(frozen=True, slots=True)
class _Context:
    load: h2load.Load
    paced: h2load.Load
    where: Placement
    meter: CpuMeter
    log: Path


def _envoy_version(envoy: str) -> str:
    out = subprocess.run([envoy, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout)
    return f"Envoy {found.group(1)}" if found else "Envoy (unknown version)"


def run(
    load: h2load.Load, rate: int, rate_seconds: float, rounds: int, where: Placement
) -> EnvoyReport:
    """Start upstream, both Check servers and three Envoys; verify; alternate a/b/c per round."""
    started = time.monotonic()
    tool = h2load.ensure_h2load()
    paced = h2load.Load(PACED_CLIENTS, load.streams, rate_seconds, load.warmup)
    report = EnvoyReport(load, rate, paced, where, _envoy_version(envoyproxy.binary()))
    with tempfile.TemporaryDirectory(prefix="bench-envoy-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        audit = work / "audit.jsonl"
        up_pin, pin, py = where.pin(where.upstream), where.pin(where.authz), python()
        cmds = {
            "upstream": [*up_pin, py, "-m", "guardrail_authz.demo.upstream", "--port", "0"],
            "no-op": [*pin, py, "-m", "bench.noop_server", "--grpc", "127.0.0.1:0"],
            "guardrail-authz": [*pin, py, "-m", "guardrail_authz", "serve", "--policies",
                                str(ROOT / "policies"), "--grpc", "127.0.0.1:0", "--http",
                                "127.0.0.1:0", "--audit-log", str(audit), "--grace", "1"],
        }  # fmt: skip
        up = stack.enter_context(
            running("upstream", cmds["upstream"], work / "upstream.log", UPSTREAM_READY)
        )
        noop = stack.enter_context(running("no-op", cmds["no-op"], work / "noop.log"))
        real = stack.enter_context(
            running("guardrail-authz", cmds["guardrail-authz"], work / "real.log")
        )
        configs = {s: work / f"envoy-{s}.yaml" for s in SETUPS}
        for setup, authz in (("a", None), ("b", noop.port), ("c", real.port)):
            configs[setup].write_text(envoyproxy.config(up.port, authz), encoding="utf-8")
        envoys = stack.enter_context(envoyproxy.running(configs, where))
        report.commands = {k: " ".join(v) for k, v in cmds.items()}
        report.commands["envoy"] = " ".join(envoys["c"].server.command)
        report.checks = verify(envoys)
        meter = CpuMeter(
            {
                "envoy": (where.envoy, [e.server for e in envoys.values()]),
                "authz": (where.authz, [noop, real]),
                "upstream": (where.upstream, [up]),
            }
        )
        ctx = _Context(load, paced, where, meter, work / "latency.tsv")
        for n in range(1, rounds + 1):
            print(f" round {n}/{rounds}", flush=True)
            for target in (None, rate):
                for setup in SETUPS:
                    port = envoys[setup].server.port
                    report.runs.append(_measure(tool, setup, port, target, ctx))
        check_after(report, envoys, audit)
    report.seconds = time.monotonic() - started
    return report
