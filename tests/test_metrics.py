"""Prometheus metrics: decisions by action, detector hits, rate-limit denials, stages, JWKS."""

from __future__ import annotations

import asyncio
import re
from typing import Any, cast

import grpc

from guardrail_authz.audit import AuditLog
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.identity.jwks import FetchError, JwksCache
from guardrail_authz.identity.jwt import JwtProvider, TokenSource
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.servicer import CheckService
from tests.conftest import SHIPPED_POLICIES
from tests.jwtkit import make_key
from tests.serverproc import check_request

READER = {"x-api-key": "demo-reader-key"}
_NO_CONTEXT = cast("grpc.aio.ServicerContext[bytes, bytes]", None)


def _service(tmp_path: Any) -> CheckService:
    metrics = Metrics()
    holder = SnapshotHolder(SHIPPED_POLICIES, metrics)
    assert holder.load()
    audit = AuditLog(tmp_path / "audit.log")
    return CheckService(holder, audit, metrics, Runtime(LocalLimiter()), batch_wait=0)


def _run(svc: CheckService, *requests: bytes) -> None:
    async def go() -> None:
        for payload in requests:
            await svc.check(payload, _NO_CONTEXT)

    try:
        asyncio.run(go())
    finally:
        svc.audit.close()


def _value(text: str, name: str, **labels: str) -> float:
    """The value of one sample, its labels matched exactly (in Prometheus' sorted order)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(inner)}\}} (\S+)$", text, re.M)
    assert found is not None, f"{name}{{{inner}}} not in metrics"
    return float(found.group(1))


def test_detector_hits_and_payload_stage(tmp_path: Any) -> None:
    svc = _service(tmp_path)
    headers = {**READER, "content-type": "application/json"}

    def order(body: bytes) -> bytes:
        req = check_request("POST", "/api/orders", headers=headers)
        req.attributes.request.http.raw_body = body
        return req.SerializeToString()

    _run(
        svc,
        order(b'{"item": "x\' OR \'1\'=\'1", "quantity": 1}'),
        order(b'{"item": "tea", "quantity": 2}'),
    )
    text = svc.metrics.render().decode()
    labels = {"policy": "orders", "route": "orders/create"}
    assert _value(text, "guardrail_detector_hits_total", **labels, detector="sqli", mode="block")
    assert (
        _value(
            text,
            "guardrail_decisions_total",
            **labels,
            action="orders.create",
            outcome="deny",
            reason="sqli_detected",
        )
        == 1
    )
    assert 'guardrail_stage_seconds_count{stage="payload"} 2.0' in text
    assert 'guardrail_stage_seconds_count{stage="decide"} 2.0' in text


def test_rate_limit_denials_are_counted(tmp_path: Any) -> None:
    svc = _service(tmp_path)
    search = check_request("GET", "/api/search?q=tea", headers=READER).SerializeToString()
    _run(svc, *([search] * 7))
    text = svc.metrics.render().decode()
    assert (
        _value(text, "guardrail_ratelimit_denials_total", policy="search", route="search/query")
        == 2
    )
    assert (
        _value(
            text,
            "guardrail_decisions_total",
            policy="search",
            route="search/query",
            action="search.query",
            outcome="deny",
            reason="rate_limited",
        )
        == 2
    )


def test_jwks_refreshes_are_counted() -> None:
    metrics = Metrics()
    answers: list[object] = [FetchError("down"), {"keys": [make_key("RS256", "k1").jwk]}]

    def fetch(_url: str) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = [0.0]
    cache = JwksCache(
        fetch, clock=lambda: clock[0], min_refresh=0, on_refresh=metrics.jwks_refreshed
    )

    provider = JwtProvider(
        "https://idp", ("a",), ("RS256",), 0, (TokenSource("authorization", "Bearer ", None),),
        "sub", None, True, None, "https://idp/jwks", False, 60,
    )  # fmt: skip
    cache.track([provider])
    cache.refresh_due()
    clock[0] = 1.0
    cache.refresh_due()
    text = metrics.render().decode()
    src = "https://idp/jwks"
    assert _value(text, "guardrail_jwks_refreshes_total", source=src, result="failed") == 1
    assert _value(text, "guardrail_jwks_refreshes_total", source=src, result="ok") == 1


def test_audit_stage_is_observed_per_batch(tmp_path: Any) -> None:
    metrics = Metrics()
    audit = AuditLog(tmp_path / "audit.log")
    audit.on_flush = lambda seconds, n: metrics.stage("audit", seconds, n)
    try:
        for i in range(3):  # outside an event loop each record is written at once
            audit.record(Decision(True, 200, "allowed", f"d-{i}", "v"), None, 0.001)
    finally:
        audit.close()
    assert 'guardrail_stage_seconds_count{stage="audit"} 3.0' in metrics.render().decode()
