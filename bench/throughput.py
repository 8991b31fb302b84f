"""Throughput of the real server against a no-op Check server under the same h2load gRPC load."""

from __future__ import annotations

import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench import h2load
from bench.checkreq import CHECK_PATH, allow_request, deny_request, grpc_frame
from bench.procs import ROOT, BenchError, Cores, Server, python, running
from guardrail_authz.server.batch import DEFAULT_WAIT
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse

GRPC_OK = 0
GRPC_PERMISSION_DENIED = 7


@dataclass(slots=True)
class ThroughputReport:
    """Every run of one throughput comparison, in the order they ran."""

    load: h2load.Load
    cores: Cores
    request_bytes: int
    noop_command: str = ""
    real_command: str = ""
    rounds: list[tuple[h2load.Result, h2load.Result]] = field(default_factory=list)
    batched_command: str = ""
    batched: list[h2load.Result] = field(default_factory=list)  # (a'): no-op, same batching
    deny: h2load.Result | None = None
    checks: list[str] = field(default_factory=list)

    def median(self, which: int) -> float:
        """Median req/s of the no-op (0) or the real server (1)."""
        return statistics.median(pair[which].summary.rps for pair in self.rounds)

    def ratio(self) -> float:
        """Median real / median no-op."""
        return self.median(1) / self.median(0)

    def batched_median(self) -> float:
        """Median req/s of the no-op answering through the same micro-batching (a')."""
        return statistics.median(r.summary.rps for r in self.batched)


def call_check(port: int, payload: bytes) -> CheckResponse:
    """One Check over a fresh gRPC channel; the answer parsed."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(CHECK_PATH, None, None)  # raw bytes both ways
        raw = method(payload, timeout=5)
    if not isinstance(raw, bytes):
        raise BenchError(f"Check on port {port} answered {type(raw).__name__}, not bytes")
    return CheckResponse.FromString(raw)


def verify(noop: Server, real: Server, allow: bytes, deny: bytes) -> list[str]:
    """Both servers answer correctly before anything is measured; returns what was checked."""
    out: list[str] = []
    resp = call_check(noop.port, allow)
    if resp.status.code != GRPC_OK or not resp.HasField("ok_response"):
        raise BenchError(f"no-op server did not answer OK: {resp}")
    out.append("no-op server answers status OK with ok_response")
    resp = call_check(real.port, allow)
    names = {h.header.key for h in resp.ok_response.headers}
    if resp.status.code != GRPC_OK or "x-guardrail-decision-id" not in names:
        raise BenchError(f"guardrail-authz did not allow the benchmark request: {resp}")
    out.append(
        "guardrail-authz allows GET /api/orders/42 (status OK, sets "
        f"{', '.join(sorted(names))}; removes {', '.join(resp.ok_response.headers_to_remove)})"
    )
    resp = call_check(real.port, deny)
    if resp.status.code != GRPC_PERMISSION_DENIED or resp.denied_response.status.code != 403:
        raise BenchError(f"guardrail-authz did not deny DELETE /api/orders/42 with 403: {resp}")
    out.append("guardrail-authz denies DELETE /api/orders/42 (PERMISSION_DENIED, HTTP 403)")
    return out


def _measure(
    tool: str, server: Server, data: Path, load: h2load.Load, cores: Cores
) -> h2load.Result:
    result = h2load.run(tool, server, data, load, cores)
    s = result.summary
    status = "ok" if s.clean() else "NOT CLEAN"
    print(
        f"  {server.name:16s} {s.rps:9.1f} req/s  done={s.done} "
        f"2xx={s.status_2xx} errors={s.failed + s.errored + s.timeout} "
        f"server-cpu={result.server_cpu:.0%} [{status}]",
        flush=True,
    )
    if not s.clean():
        raise BenchError(f"h2load reported failures against {server.name}: {result.command}")
    return result


def run(load: h2load.Load, rounds: int, cores: Cores, with_deny: bool) -> ThroughputReport:
    """Start both servers, verify them, then alternate no-op / real runs; servers always stop."""
    tool = h2load.ensure_h2load()
    allow, deny = allow_request(), deny_request()
    report = ThroughputReport(load, cores, len(allow))
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        allow_file, deny_file = work / "allow.grpc", work / "deny.grpc"
        allow_file.write_bytes(grpc_frame(allow))
        deny_file.write_bytes(grpc_frame(deny))
        audit = work / "audit.jsonl"
        server_cpu = cores.prefix(cores.server)
        noop_cmd = [*server_cpu, python(), "-m", "bench.noop_server", "--grpc", "127.0.0.1:0"]
        real_cmd = [
            *server_cpu,
            python(),
            "-m",
            "guardrail_authz",
            "serve",
            "--policies",
            str(ROOT / "policies"),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--audit-log",
            str(audit),
            "--grace",
            "1",
        ]
        wait_ms = str(DEFAULT_WAIT * 1000)
        batched_cmd = [*noop_cmd, "--batch-wait-ms", wait_ms]
        report.noop_command, report.real_command = " ".join(noop_cmd), " ".join(real_cmd)
        report.batched_command = " ".join(batched_cmd)
        noop = stack.enter_context(running("no-op", noop_cmd, work / "noop.log"))
        batched = stack.enter_context(running("no-op, batched", batched_cmd, work / "nb.log"))
        real = stack.enter_context(running("guardrail-authz", real_cmd, work / "real.log"))
        report.checks = verify(noop, real, allow, deny)
        for n in range(1, rounds + 1):
            print(f" round {n}/{rounds}", flush=True)
            a = _measure(tool, noop, allow_file, load, cores)
            b = _measure(tool, real, allow_file, load, cores)
            report.rounds.append((a, b))
            report.batched.append(_measure(tool, batched, allow_file, load, cores))
        if with_deny:
            print(" deny request", flush=True)
            report.deny = _measure(tool, real, deny_file, load, cores)
        denied = report.deny.summary.done if report.deny else 0
        measured = sum(b.summary.done for _, b in report.rounds) + denied
        audited = sum(1 for _ in audit.open(encoding="utf-8"))
        if audited < measured:
            raise BenchError(f"audit log has {audited} records for {measured} measured checks")
        report.checks.append(
            f"audit log holds {audited} records for {measured} measured checks (+ warm-up)"
        )
    return report
