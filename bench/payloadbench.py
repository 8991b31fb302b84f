"""Benchmark 7: payload inspection cost by body size in-process, and Check throughput with a
2 KB JSON body against the no-op Check server, in one run."""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import h2load
from bench.checkreq import BASE_HEADERS, build_check_request, grpc_frame
from bench.procs import BenchError, Cores, python, running
from bench.throughput import call_check
from guardrail_authz.engine.request import RequestView
from guardrail_authz.payload.detect import DETECTORS
from guardrail_authz.payload.plan import PayloadPlan, check_payload
from guardrail_authz.policy.compile import load_directory

SIZES = (1024, 64 * 1024, 1024 * 1024)
THROUGHPUT_BODY = 2048
POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: bench-payload}
spec:
  routes:
    - name: body
      match: {methods: [POST], paths: [/bench/body]}
      body: {contentTypes: [application/json], maxBytes: 2097152}
      inspect: {detectors: all}
      rules: [{name: anyone, effect: allow}]
"""
_TEXT = (
    "order ship green tea box please update my address the blue one O'Brien's shop select "
    "size and delete the old item from cart it's fine don't worry café Zoë 山田 thanks"
)
_WORDS = _TEXT.split()


@dataclass(slots=True)
class PayloadReport:
    """In-process µs per body size, and the throughput runs by set-up."""

    inspect_us: dict[int, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    body_bytes: int = 0
    load: h2load.Load | None = None
    cores: Cores | None = None


def json_body(size: int, seed: int = 7) -> bytes:
    """A benign JSON document of about `size` bytes: orders with prose, names and numbers."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    items: list[dict[str, object]] = []
    doc: dict[str, object] = {"customer": "Dana O'Neil", "items": items}
    while len(json.dumps(doc)) < size:
        items.append({
            "sku": f"SKU-{rng.randrange(10**6):06d}",
            "name": " ".join(rng.choice(_WORDS) for _ in range(3)),
            "note": " ".join(rng.choice(_WORDS) for _ in range(12)),
            "quantity": rng.randrange(1, 50),
            "email": f"user{rng.randrange(1000)}@example.com",
        })  # fmt: skip
    while len(json.dumps(doc)) > size and items:
        items.pop()
    return json.dumps(doc).encode()


def _plan(work: Path) -> PayloadPlan:
    directory = work / "policies"
    directory.mkdir(exist_ok=True)
    (directory / "bench.yaml").write_text(POLICY, encoding="utf-8")
    snapshot = load_directory(directory)
    route = snapshot.index.lookup("bench", 0, ["bench", "body"], "POST")
    if route is None or route.payload is None:
        raise BenchError("the bench policy has no payload plan")
    return route.payload


def inspect_cost(plan: PayloadPlan, size: int, budget: float = 1.0) -> float:
    """Best µs of `check_payload` (parse + all detectors) on a benign body of `size` bytes."""
    raw = json_body(size)
    headers = {"content-type": "application/json", "content-length": str(len(raw))}
    best = float("inf")
    deadline = time.perf_counter() + budget
    runs = 0
    while runs < 5 or (time.perf_counter() < deadline and runs < 2000):
        view = RequestView(method="POST", raw_path="/bench/body", host="bench", headers=headers,
                           body=raw)  # fmt: skip
        start = time.perf_counter()
        check_payload(plan, view)
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best * 1e6


def _request(work: Path) -> Path:
    raw = json_body(THROUGHPUT_BODY)
    headers = BASE_HEADERS | {"content-type": "application/json", "content-length": str(len(raw))}
    req = build_check_request("POST", "/bench/body", headers)
    req.attributes.request.http.raw_body = raw
    path = work / "body.grpc"
    path.write_bytes(grpc_frame(req.SerializeToString()))
    return path


def run(load: h2load.Load, rounds: int, cores: Cores) -> PayloadReport:
    """In-process inspection by size, then no-op vs guardrail-authz with a 2 KB body."""
    report = PayloadReport(load=load, cores=cores, body_bytes=THROUGHPUT_BODY)
    tool = h2load.ensure_h2load()
    with tempfile.TemporaryDirectory(prefix="bench-payload-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        plan = _plan(work)
        for size in SIZES:
            report.inspect_us[size] = inspect_cost(plan, size)
            print(f"  inspect {size:>8} B: {report.inspect_us[size]:9.1f} µs", flush=True)
        data = _request(work)
        pin = cores.prefix(cores.server)
        cmds = {
            "no-op": [*pin, python(), "-m", "bench.noop_server", "--grpc", "127.0.0.1:0"],
            "guardrail-authz": [*pin, python(), "-m", "guardrail_authz", "serve", "--policies",
                                str(work / "policies"), "--grpc", "127.0.0.1:0", "--http",
                                "127.0.0.1:0", "--audit-log", str(work / "audit.jsonl"),
                                "--grace", "1"],
        }  # fmt: skip
        report.commands = {k: " ".join(v) for k, v in cmds.items()}
        servers = {
            name: stack.enter_context(running(name, cmd, work / f"{name}.log"))
            for name, cmd in cmds.items()
        }
        resp = call_check(servers["guardrail-authz"].port, data.read_bytes()[5:])
        if not resp.HasField("ok_response"):
            raise BenchError(f"the 2 KB body was not allowed: {resp}")
        report.checks.append(f"guardrail-authz allows the {THROUGHPUT_BODY}-byte benign body")
        report.runs = {name: [] for name in cmds}
        for n in range(1, rounds + 1):
            print(f" round {n}/{rounds}", flush=True)
            for name, server in servers.items():
                result = h2load.run(tool, server, data, load, cores)
                if not result.summary.clean():
                    raise BenchError(f"h2load reported failures for {name}: {result.command}")
                print(f"  {name:16s} {result.summary.rps:9.1f} req/s", flush=True)
                report.runs[name].append(result.summary.rps)
    return report


def render(t: PayloadReport) -> list[str]:
    """The report section."""
    small = t.inspect_us[SIZES[0]] / SIZES[0] * 1024
    lines = [
        "### 7. Payload guardrails: inspection by body size, and Checks with a 2 KB body",
        "",
        "In-process, best of repeated runs: `check_payload` on a benign JSON document of orders "
        f"(prose, names, e-mails, numbers) with every detector on ({', '.join(DETECTORS)}): "
        "content-type and size checks, JSON parsing with depth and element limits, every "
        "string value, object key and path segment inspected.",
        "",
        "| body | µs per check | µs per KB | per-KB cost vs 1 KB |",
        "|---|---|---|---|",
    ]
    for size in SIZES:
        us = t.inspect_us[size]
        per_kb = us / size * 1024
        lines.append(f"| {size // 1024} KB | {us:.0f} | {per_kb:.1f} | {per_kb / small:.2f} |")
    ms64 = t.inspect_us[64 * 1024] / 1000
    verdict = "met" if ms64 < 2.0 else "NOT met"
    lines += ["", f"64 KB: **{ms64:.2f} ms** (target < 2 ms: **{verdict}**).", ""]
    if t.runs and t.load is not None and t.cores is not None:
        noop = statistics.median(t.runs["no-op"])
        real = statistics.median(t.runs["guardrail-authz"])
        lines += [
            f"Throughput with a {t.body_bytes}-byte JSON body (POST /bench/body, all detectors "
            f"on; {t.cores.describe()}; h2load {t.load.clients} connections x "
            f"{t.load.streams} streams, {t.load.seconds:g} s per run, runs alternating):",
            "",
            f"- servers: `{t.commands['no-op']}` and `{t.commands['guardrail-authz']}`",
            "",
            "| round | no-op req/s | guardrail-authz req/s | ratio |",
            "|---|---|---|---|",
        ]
        for n, (a, b) in enumerate(zip(t.runs["no-op"], t.runs["guardrail-authz"], strict=True)):
            lines.append(f"| {n + 1} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
        lines += [
            f"| **median** | **{noop:.0f}** | **{real:.0f}** | **{real / noop:.2f}** |",
            "",
            f"{1e6 / real - 1e6 / noop:.0f} µs more per Check than the no-op on one core.",
            "",
        ]
    lines += [f"- {c}" for c in t.checks]
    return [*lines, ""]
