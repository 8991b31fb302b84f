"""Benchmark 8: Check throughput with tracing on (spans exported to an OTLP collector) vs off,
same server, same load, in one run."""

from __future__ import annotations

import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import h2load
from bench.checkreq import allow_request, grpc_frame
from bench.procs import ROOT, BenchError, Cores, python, running
from bench.throughput import call_check

SETUPS = ("off", "on")


@dataclass(slots=True)
class TracingReport:
    """Every run, by set-up, and what the collector received."""

    load: h2load.Load
    cores: Cores
    commands: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[h2load.Result]] = field(default_factory=dict)
    spans: int = 0
    checks: list[str] = field(default_factory=list)

    def median(self, setup: str) -> float:
        """Median req/s of one set-up."""
        return statistics.median(r.summary.rps for r in self.runs[setup])


class _Collector(BaseHTTPRequestHandler):
    spans = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        req = ExportTraceServiceRequest.FromString(body)
        n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        with _Collector.lock:
            _Collector.spans += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def _collector() -> Iterator[str]:
    """An OTLP/HTTP traces endpoint in this process (on the load generator's CPU)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def run(load: h2load.Load, rounds: int, cores: Cores) -> TracingReport:
    """guardrail-authz with and without --otlp-endpoint, alternating per round."""
    tool = h2load.ensure_h2load()
    report = TracingReport(load, cores)
    _Collector.spans = 0
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        url = stack.enter_context(_collector())
        data = work / "allow.grpc"
        data.write_bytes(grpc_frame(allow_request()))
        base = [*cores.prefix(cores.server), python(), "-m", "guardrail_authz", "serve",
                "--policies", str(ROOT / "policies"), "--grpc", "127.0.0.1:0",
                "--http", "127.0.0.1:0", "--grace", "1"]  # fmt: skip
        cmds = {
            "off": [*base, "--audit-log", str(work / "off.jsonl")],
            "on": [*base, "--audit-log", str(work / "on.jsonl"), "--otlp-endpoint", url],
        }
        report.commands = {k: " ".join(v) for k, v in cmds.items()}
        servers = {
            s: stack.enter_context(running(f"tracing {s}", cmds[s], work / f"{s}.log"))
            for s in SETUPS
        }
        for setup, server in servers.items():
            if not call_check(server.port, allow_request()).HasField("ok_response"):
                raise BenchError(f"tracing {setup}: the benchmark request was not allowed")
        report.runs = {s: [] for s in SETUPS}
        for n in range(1, rounds + 1):
            print(f" round {n}/{rounds}", flush=True)
            for setup in SETUPS:
                result = h2load.run(tool, servers[setup], data, load, cores)
                if not result.summary.clean():
                    raise BenchError(f"h2load reported failures (tracing {setup})")
                print(f"  tracing {setup:3s} {result.summary.rps:9.1f} req/s", flush=True)
                report.runs[setup].append(result)
    report.spans = _Collector.spans  # the servers flushed their spans when they stopped
    measured = sum(r.summary.done for r in report.runs["on"])
    report.checks.append(
        f"the collector received {report.spans} spans for {measured} measured Checks with "
        "tracing on (+ warm-up; spans beyond the exporter's queue of 8192 are dropped, not "
        "waited for)"
    )
    return report


def render(t: TracingReport) -> list[str]:
    """The report section."""
    off, on = t.median("off"), t.median("on")
    lines = [
        "### 8. Tracing on vs off",
        "",
        f"- Pinning: {t.cores.describe()}; load as in benchmark 1 (the benchmark request "
        "carries a W3C `traceparent`, so every Check joins it and records a span); runs "
        "alternate off, on in each round.",
        f"- off: `{t.commands.get('off', '')}`",
        f"- on: `{t.commands.get('on', '')}`, exporting to an OTLP/HTTP collector in the "
        "bench process (on the load generator's CPU)",
        "",
        "| round | tracing off req/s | tracing on req/s | on/off |",
        "|---|---|---|---|",
    ]
    for n in range(len(t.runs["off"])):
        a, b = t.runs["off"][n].summary.rps, t.runs["on"][n].summary.rps
        lines.append(f"| {n + 1} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    lines += [
        f"| **median** | **{off:.0f}** | **{on:.0f}** | **{on / off:.2f}** |",
        "",
        f"Tracing costs {1e6 / on - 1e6 / off:.0f} µs per Check on one core "
        "(a span created, attributed, ended and exported from the SDK's thread).",
        "",
        "Checked:",
        "",
    ]
    lines += [f"- {c}" for c in t.checks]
    return [*lines, ""]
