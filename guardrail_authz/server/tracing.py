"""OpenTelemetry traces: a span per Check (and per masking call) joined to the caller's trace.

Off unless `--otlp-endpoint` is given. Spans are exported by the SDK's batch processor in its
own thread, so a slow or absent collector never holds up a decision: when its queue is full,
spans are dropped, not waited for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView

log = logging.getLogger(__name__)
TRACEPARENT = "traceparent"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """How Checks are traced."""

    otlp_endpoint: str | None = None  # e.g. http://collector:4318/v1/traces; None: off
    sample_ratio: float = 1.0  # of traces this guardrail starts; a caller's decision is kept
    inject: bool = True  # start a trace for requests without one; pass traceparent upstream
    service_name: str = "guardrail-authz"


def _hex(value: str, length: int) -> int | None:
    if len(value) != length or not _HEX.issuperset(value) or not value.strip("0"):
        return None
    return int(value, 16)


def parent_context(headers: Mapping[str, str]) -> SpanContext | None:
    """The caller's span from W3C `traceparent`, or B3 (`b3` single header, `x-b3-*`)."""
    tp = headers.get(TRACEPARENT)
    if tp is not None:
        parts = tp.strip().lower().split("-")
        if len(parts) >= 4 and parts[0] != "ff" and len(parts[0]) == 2:
            trace_id, span_id = _hex(parts[1], 32), _hex(parts[2], 16)
            if trace_id is not None and span_id is not None and len(parts[3]) == 2:
                sampled = int(parts[3], 16) & 1 if _HEX.issuperset(parts[3]) else 0
                return _remote(trace_id, span_id, sampled=bool(sampled))
    b3 = headers.get("b3")
    if b3 is not None:
        parts = b3.strip().lower().split("-")
        if len(parts) >= 2:
            raw = parts[0].rjust(32, "0")
            trace_id, span_id = _hex(raw, 32), _hex(parts[1], 16)
            if trace_id is not None and span_id is not None:
                sampled = len(parts) < 3 or parts[2] in ("1", "d")
                return _remote(trace_id, span_id, sampled=sampled)
    tid, sid = headers.get("x-b3-traceid"), headers.get("x-b3-spanid")
    if tid is not None and sid is not None:
        trace_id, span_id = _hex(tid.strip().lower().rjust(32, "0"), 32), _hex(sid.lower(), 16)
        if trace_id is not None and span_id is not None:
            flag = headers.get("x-b3-sampled", "1").strip()
            return _remote(trace_id, span_id, sampled=flag in ("1", "true", "d"))
    return None


def _remote(trace_id: int, span_id: int, *, sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def traceparent(span: Span) -> str:
    """The W3C traceparent naming `span` (for the upstream request)."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 1:02x}"


class Tracing:
    """Creates the spans of Checks and masking calls."""

    def __init__(self, config: TraceConfig, exporter: SpanExporter | None = None) -> None:
        self.config = config
        resource = Resource.create({"service.name": config.service_name})
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBasedTraceIdRatio(config.sample_ratio)
        )
        if exporter is not None:  # tests: an in-process exporter, spans handed over at once
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            otlp = OTLPSpanExporter(endpoint=config.otlp_endpoint, timeout=5)
            # Never blocks a decision: a bounded queue, exported from the processor's thread.
            self.provider.add_span_processor(
                BatchSpanProcessor(otlp, max_queue_size=8192, schedule_delay_millis=1000)
            )
        self.tracer = self.provider.get_tracer("guardrail_authz")

    def check(self, d: Decision, view: RequestView | None, start_ns: int, end_ns: int) -> None:
        """Record the span of one Check: a child of the caller's span when the request names
        one, else (with `inject`) the root of a new trace passed upstream in `traceparent`."""
        headers: Mapping[str, str] = view.headers if view is not None else {}
        parent = parent_context(headers)
        if parent is None and not self.config.inject:
            return
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        span = self.tracer.start_span(
            "guardrail.check", context=context, kind=SpanKind.SERVER, start_time=start_ns
        )
        if span.is_recording():
            attributes = {
                "guardrail.decision_id": d.decision_id,
                "guardrail.outcome": "allow" if d.allowed else "deny",
                "guardrail.status": d.status,
                "guardrail.reason": d.reason,
                "guardrail.policy_version": d.policy_version,
                "guardrail.enforced": not d.monitored,
            }
            for key, value in (
                ("guardrail.policy", d.policy),
                ("guardrail.route", d.route),
                ("guardrail.action", d.action),
                ("guardrail.rule", d.rule),
                ("enduser.id", d.principal),
            ):
                if value:
                    attributes[key] = value
            if view is not None:
                attributes["http.request.method"] = view.method
                attributes["url.path"] = view.raw_path.partition("?")[0][:512]
            span.set_attributes(attributes)
        if parent is None and d.allowed:
            d.upstream_headers_set.append((TRACEPARENT, traceparent(span), "overwrite"))
        span.end(end_time=end_ns)

    def mask_span(self, headers: Mapping[str, str], start_ns: int) -> Span:
        """A span for one masking call (ext_proc), child of the request's trace if any; the
        caller sets attributes and ends it."""
        parent = parent_context(headers)
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        return self.tracer.start_span(
            "guardrail.mask", context=context, kind=SpanKind.SERVER, start_time=start_ns
        )

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        try:
            self.provider.shutdown()
        except Exception:
            log.exception("trace exporter shutdown failed")
