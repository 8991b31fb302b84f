"""The Check handler's stages timed in-process (no gRPC): where a decision's CPU time goes."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc

from bench.checkreq import allow_request, deny_request
from bench.procs import BenchError
from guardrail_authz.audit import AuditLog
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.server.encode import encode_allow
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.response import to_check_response
from guardrail_authz.server.servicer import CheckService, view_from_check
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckRequest

ITERATIONS = 3000
REPEATS = 5


def _best_us(fn: Callable[[], object], iterations: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / 1000 / iterations)
    return best


def _best_check_us(svc: CheckService, payload: bytes, iterations: int, repeats: int) -> float:
    context = cast("grpc.aio.ServicerContext[bytes, bytes]", None)  # check() never touches it

    async def loop() -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(iterations):
                await svc.check(payload, context)
            best = min(best, (time.perf_counter_ns() - start) / 1000 / iterations)
        return best

    return asyncio.run(loop())


def measure(
    policies: Path, iterations: int = ITERATIONS, repeats: int = REPEATS
) -> list[tuple[str, float]]:
    """(stage, best µs per call) for the shipped policies and the bench's allow request."""
    metrics = Metrics()
    holder = SnapshotHolder(policies, metrics)
    holder.load()
    snapshot = holder.snapshot
    if snapshot is None:
        raise BenchError(f"no policy loaded from {policies}")
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        audit = AuditLog(Path(tmp) / "audit.jsonl")
        try:
            svc = CheckService(holder, audit, metrics, batch_wait=0)  # the handler alone
            payload = allow_request()
            req = CheckRequest.FromString(payload)
            view = view_from_check(req)
            decision, _ = svc.decide(payload)
            deny, _ = svc.decide(deny_request())
            stages: list[tuple[str, Callable[[], Any]]] = [
                ("CheckRequest.FromString (1.3 KB)", lambda: CheckRequest.FromString(payload)),
                ("view_from_check", lambda: view_from_check(req)),
                (
                    "view_from_check + evaluate",
                    lambda: evaluate(snapshot, view_from_check(req), "bench"),
                ),
                ("CheckService.decide (parse+view+evaluate)", lambda: svc.decide(payload)),
                (
                    "to_check_response + SerializeToString (allow)",
                    lambda: to_check_response(decision).SerializeToString(),
                ),
                (
                    "encode_allow (allow, what the server sends)",
                    lambda: encode_allow(decision),
                ),
                (
                    "to_check_response + SerializeToString (deny)",
                    lambda: to_check_response(deny).SerializeToString(),
                ),
                (
                    "Metrics.decision",
                    lambda: metrics.decision(
                        "orders", "orders/read", "orders.read", True, "allowed", 1e-4
                    ),
                ),
                ("AuditLog.record (file)", lambda: audit.record(decision, view, 1e-4)),
            ]
            out = [(name, _best_us(fn, iterations, repeats)) for name, fn in stages]
            out.append(
                (
                    "CheckService.check, whole handler (allow)",
                    _best_check_us(svc, payload, iterations, repeats),
                )
            )
            out.append(
                (
                    "CheckService.check, whole handler (deny)",
                    _best_check_us(svc, deny_request(), iterations, repeats),
                )
            )
        finally:
            audit.close()
    return out
