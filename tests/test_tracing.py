"""OpenTelemetry: a span per Check joined to the caller's trace, traceparent injected upstream,
OTLP export to an in-process collector, and never a decision held up by tracing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardrail_authz.audit import AuditLog
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.servicer import CheckService
from guardrail_authz.server.tracing import TraceConfig, Tracing, parent_context
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from tests.conftest import SHIPPED_POLICIES
from tests.serverproc import ServerProcess, check_request

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
_NO_CONTEXT = cast("grpc.aio.ServicerContext[bytes, bytes]", None)


def test_parent_context_from_w3c_and_b3() -> None:
    ctx = parent_context({"traceparent": TRACEPARENT})
    assert ctx is not None
    assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx.trace_flags.sampled) == (
        TRACE_ID,
        SPAN_ID,
        True,
    )
    single = parent_context({"b3": "a3ce929d0e0e4736-00f067aa0ba902b7-1"})
    assert single is not None
    assert f"{single.trace_id:032x}" == "0000000000000000a3ce929d0e0e4736"  # 64-bit id widened
    multi = parent_context({"x-b3-traceid": TRACE_ID, "x-b3-spanid": SPAN_ID, "x-b3-sampled": "0"})
    assert multi is not None
    assert not multi.trace_flags.sampled
    for bad in (
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID[:-1]}x-{SPAN_ID}-01",
        "garbage",
    ):
        assert parent_context({"traceparent": bad}) is None, bad
    assert parent_context({}) is None


def _traced(tmp_path: Path, **config: Any) -> tuple[CheckService, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TraceConfig("http://unused", **config), exporter)
    metrics = Metrics()
    holder = SnapshotHolder(SHIPPED_POLICIES, metrics)
    assert holder.load()
    audit = AuditLog(tmp_path / "audit.log")
    return CheckService(holder, audit, metrics, batch_wait=0, tracing=tracing), exporter


def _check(svc: CheckService, path: str, headers: dict[str, str]) -> CheckResponse:
    payload = check_request("GET", path, headers=headers).SerializeToString()

    async def go() -> bytes:
        return await svc.check(payload, _NO_CONTEXT)

    try:
        return CheckResponse.FromString(asyncio.run(go()))
    finally:
        svc.audit.close()


def _upstream(resp: CheckResponse) -> dict[str, str]:
    return {h.header.key: h.header.value for h in resp.ok_response.headers}


def test_the_check_span_is_a_child_of_the_callers_span(tmp_path: Path) -> None:
    svc, exporter = _traced(tmp_path)
    resp = _check(svc, "/public/ping", {"traceparent": TRACEPARENT})
    [span] = exporter.get_finished_spans()
    assert span.name == "guardrail.check"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == SPAN_ID
    attrs = dict(span.attributes or {})
    upstream = _upstream(resp)
    assert attrs["guardrail.decision_id"] == upstream["x-guardrail-decision-id"]
    assert attrs["guardrail.outcome"] == "allow"
    assert attrs["guardrail.route"] == "public/ping"
    assert attrs["url.path"] == "/public/ping"
    assert "traceparent" not in upstream  # the caller's own traceparent travels on as it is
    assert span.end_time is not None
    assert span.start_time is not None
    assert 0 < span.end_time - span.start_time < 1e9


def test_a_request_without_trace_starts_one_and_passes_it_upstream(tmp_path: Path) -> None:
    svc, exporter = _traced(tmp_path)
    resp = _check(svc, "/public/ping", {})
    [span] = exporter.get_finished_spans()
    assert span.parent is None
    ctx = span.context
    assert _upstream(resp)["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def test_a_denial_is_traced_without_mutations(tmp_path: Path) -> None:
    svc, exporter = _traced(tmp_path)
    resp = _check(svc, "/api/orders/1", {"b3": f"{TRACE_ID}-{SPAN_ID}-1"})
    assert resp.denied_response.status.code == 401
    [span] = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    attrs = dict(span.attributes or {})
    assert attrs["guardrail.outcome"] == "deny"
    assert attrs["guardrail.status"] == 401
    assert attrs["guardrail.reason"] == "no_identity"


def test_without_inject_only_callers_traces_are_joined(tmp_path: Path) -> None:
    svc, exporter = _traced(tmp_path, inject=False)
    resp = _check(svc, "/public/ping", {})
    assert "traceparent" not in _upstream(resp)
    assert exporter.get_finished_spans() == ()


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that keeps what it receives."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()


def test_spans_reach_an_otlp_collector(
    tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    url, received = collector
    extra = ["--otlp-endpoint", url]
    with ServerProcess(SHIPPED_POLICIES, tmp_path / "audit.log", extra=extra) as server:
        server.check(check_request("GET", "/public/ping", headers={"traceparent": TRACEPARENT}))
        deadline = time.monotonic() + 15
        spans: list[Any] = []
        while time.monotonic() < deadline and not spans:
            spans = [
                span
                for request in list(received)
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]
            time.sleep(0.1)
    assert spans, "no span exported within 15 s"
    [span] = spans
    assert span.name == "guardrail.check"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == SPAN_ID
    names = {a.key for a in span.attributes}
    assert {"guardrail.decision_id", "guardrail.outcome", "guardrail.route"} <= names


def test_an_unreachable_collector_never_holds_up_decisions(tmp_path: Path) -> None:
    extra = ["--otlp-endpoint", "http://127.0.0.1:1/v1/traces"]
    with ServerProcess(SHIPPED_POLICIES, tmp_path / "audit.log", extra=extra) as server:
        started = time.monotonic()
        for _ in range(200):
            resp = server.check(check_request("GET", "/public/ping"))
            assert resp.status.code == 0
        took = time.monotonic() - started
    assert took < 5, took  # 200 Checks; an exporter waiting on the network would take longer


def test_a_masking_call_gets_a_span_in_the_requests_trace(tmp_path: Path) -> None:
    from guardrail_authz.demo.upstream import customer
    from guardrail_authz.server.extproc import ExtProcService, _Stream
    from tests.test_extproc import body, request_headers, response_headers

    exporter = InMemorySpanExporter()
    tracing = Tracing(TraceConfig("http://unused"), exporter)
    metrics = Metrics()
    holder = SnapshotHolder(SHIPPED_POLICIES, metrics)
    assert holder.load()
    service = ExtProcService(holder, metrics, b"k" * 32, tracing=tracing)
    stream = _Stream()
    first = request_headers(
        "/api/customers/7",
        traceparent=TRACEPARENT,
        x_guardrail_principal="reader",
        x_guardrail_roles="reader",
    )
    service.answer(stream, first)
    service.answer(stream, response_headers())
    service.answer(stream, body("response_body", customer("7")))
    [span] = exporter.get_finished_spans()
    assert span.name == "guardrail.mask"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == SPAN_ID
    attrs = dict(span.attributes or {})
    assert attrs["guardrail.route"] == "customers/read"
    assert attrs["guardrail.mask.direction"] == "response"
    assert int(str(attrs["guardrail.mask.masked"])) >= 3
