"""Envoy's external processing stream (ext_proc v3): mask sensitive data in JSON bodies.

ext_authz cannot change bodies, so Envoy's ext_proc filter, placed after ext_authz in the HTTP
filter chain, opens one `ExternalProcessor/Process` stream per request. The route is found the
way evaluate() finds it, and its mask plan decides what Envoy keeps sending: everything a plan
does not touch is switched off with a mode_override on the first answer, so Envoy passes it
through without copying it to us.

The caller's identity is read from the `x-guardrail-principal` / `x-guardrail-roles` request
headers. They are trustworthy here: ext_authz runs first, strips every inbound `x-guardrail-*`
header and sets these two on the requests it allows, so a client cannot spoof them. (A route
with identity propagation off gets neither: its callers are masked as anonymous, never exempt.)

Failure: an exception while answering a message (or mask_body reporting its own internal
error) ends the stream with gRPC INTERNAL, and Envoy applies the filter's failure mode:
`failure_mode_allow: false` sends the client a local reply (`status_on_error`, 500 by default;
a missed `message_timeout` gives 504); `failure_mode_allow: true` lets the message through
unmasked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from guardrail_authz.engine.decision import PRINCIPAL_HEADER, ROLES_HEADER
from guardrail_authz.engine.request import BadRequestError, normalise_host, split_path
from guardrail_authz.payload.mask import MaskOutcome, MaskPlan, mask_body
from guardrail_authz.policy.snapshot import CompiledRoute
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.tracing import Tracing
from guardrail_authz.wire.envoy.config.core.v3 import base_pb2
from guardrail_authz.wire.envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import (
    ProcessingMode,
)
from guardrail_authz.wire.envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)

log = logging.getLogger(__name__)
SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
ATTRIBUTES_KEY = "envoy.filters.http.ext_proc"  # where Envoy puts the request_attributes
PORT_ATTRIBUTE = "destination.port"  # the listener port, as Check's destination address
_WANTED = frozenset(
    {":method", ":path", ":authority", "host", "content-type", "content-encoding"}
    | {"content-length", PRINCIPAL_HEADER, ROLES_HEADER}
    | {"traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}  # the trace to join
)
ENGINE_ERROR = "error"  # MaskOutcome.skipped when mask_body caught an exception of its own
_COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})  # what mask_body decompresses
_HVO = base_pb2.HeaderValueOption


class MaskingError(Exception):
    """The masking engine failed on a body; the stream ends with INTERNAL."""


class Masker(Protocol):
    """The signature of mask_body (tests pass a stand-in)."""

    def __call__(
        self,
        plan: MaskPlan,
        body: bytes,
        /,
        *,
        content_type: str,
        content_encoding: str,
        principal: str | None,
        roles: frozenset[str],
        key: bytes,
    ) -> MaskOutcome:
        """Mask one body."""


class MaskMetrics(Protocol):
    """The two counters the service reports to (server.metrics.Metrics provides them)."""

    def masked(self, policy: str, route: str, rule: str, n: int) -> None:
        """Count values masked by one rule in one body."""

    def mask_skipped(self, policy: str, route: str, reason: str) -> None:
        """Count a body of a masked route passed through unmasked, and why."""


@dataclass(slots=True)
class _Stream:
    """What one Process stream remembers between Envoy's messages."""

    route: CompiledRoute | None = None
    plan: MaskPlan | None = None
    principal: str | None = None
    roles: frozenset[str] = frozenset()
    mask_request: bool = False
    mask_response: bool = False
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)


def _mode_answer(kind: str, mode: ProcessingMode | None) -> bytes:
    """An answer of `kind` that changes nothing, with an optional mode_override."""
    answer = ProcessingResponse(mode_override=mode)
    getattr(answer, kind).SetInParent()
    return answer.SerializeToString()


def _request_modes(mask_request: bool, mask_response: bool) -> ProcessingMode:
    """The whole processing mode for the rest of the stream (body modes are always explicit)."""
    return ProcessingMode(
        request_body_mode=ProcessingMode.BUFFERED if mask_request else ProcessingMode.NONE,
        response_header_mode=ProcessingMode.SEND if mask_response else ProcessingMode.SKIP,
        response_body_mode=ProcessingMode.BUFFERED if mask_response else ProcessingMode.NONE,
    )


# Every fixed answer, serialized once.
_REQUEST_HEADERS = {
    (req, resp): _mode_answer("request_headers", _request_modes(req, resp))
    for req in (False, True)
    for resp in (False, True)
}
_RESPONSE_HEADERS = _mode_answer("response_headers", None)
_RESPONSE_HEADERS_NO_BODY = _mode_answer("response_headers", ProcessingMode())  # bodies: NONE
_UNCHANGED = {
    name: _mode_answer(name, None)
    for name in ("request_body", "response_body", "request_trailers", "response_trailers")
}


def _body_answer(direction: str, body: bytes) -> bytes:
    """A BodyResponse replacing the body, with the content-length Envoy checks it against."""
    answer = ProcessingResponse()
    common = getattr(answer, direction).response
    common.body_mutation.body = body
    common.header_mutation.set_headers.add(
        header=base_pb2.HeaderValue(key="content-length", raw_value=str(len(body)).encode()),
        append_action=_HVO.OVERWRITE_IF_EXISTS_OR_ADD,
    )
    return answer.SerializeToString()


def _read_headers(message: base_pb2.HeaderMap) -> dict[str, str]:
    """The headers the service uses, first value of each, from value or raw_value."""
    out: dict[str, str] = {}
    for hv in message.headers:
        key = hv.key.lower()
        if key in _WANTED and key not in out:
            out[key] = hv.raw_value.decode("utf-8", "replace") if hv.raw_value else hv.value
    return out


def _port(request: ProcessingRequest) -> int:
    """The listener port from the `destination.port` request attribute (0: unknown)."""
    if ATTRIBUTES_KEY not in request.attributes:
        return 0
    value = request.attributes[ATTRIBUTES_KEY].fields.get(PORT_ATTRIBUTE)
    if value is None:
        return 0
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value" and value.string_value.isdigit():
        return int(value.string_value)
    return 0


def unmaskable(headers: Mapping[str, str], plan: MaskPlan) -> str | None:
    """Why mask_body would pass a body with these headers through, known before it is sent
    (not_json, unsupported_encoding, compressed, too_large); None: it may be masked."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.endswith("+json") and "/" in media):
        return "not_json"
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in _COMPRESSED:
        if not plan.decompress:
            return "compressed"
    elif encoding not in ("", "identity"):
        return "unsupported_encoding"
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > plan.max_bytes:
        return "too_large"  # and Envoy need not buffer it
    return None


class ExtProcService:
    """Answers Envoy's ext_proc messages; one _Stream of state per HTTP request."""

    def __init__(
        self,
        holder: SnapshotHolder,
        metrics: MaskMetrics,
        key: bytes,
        masker: Masker | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.key = key  # the HMAC key of the `hash` mask style
        self.masker: Masker = masker if masker is not None else mask_body
        self.tracing = tracing  # a span per masking call, when tracing is on

    async def process(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        """The gRPC handler: one answer per message; INTERNAL when a message cannot be handled."""
        stream = _Stream()
        failed = False
        async for payload in requests:
            try:
                request = ProcessingRequest.FromString(payload)
                answer = self.answer(stream, request)
            except Exception:
                route = stream.route.id if stream.route is not None else "-"
                log.exception("ext_proc message failed (route %s); ending the stream", route)
                failed = True
                break
            if not request.observability_mode:  # observed only: Envoy ignores answers
                yield answer
        if failed:  # no detail on the wire: Envoy applies its failure_mode_allow
            await context.abort(grpc.StatusCode.INTERNAL, "guardrail ext_proc failed")

    def answer(self, stream: _Stream, request: ProcessingRequest) -> bytes:
        """The serialized ProcessingResponse to one message, updating the stream's state."""
        kind = request.WhichOneof("request")
        if kind == "request_headers":
            return self._request_headers(stream, request)
        if kind == "response_headers":
            return self._response_headers(stream, request)
        if kind == "request_body" and stream.mask_request:
            return self._body(stream, kind, request.request_body.body, stream.request_headers)
        if kind == "response_body" and stream.mask_response:
            return self._body(stream, kind, request.response_body.body, stream.response_headers)
        if kind is None:
            raise ValueError("ProcessingRequest without a request member")
        return _UNCHANGED[kind]  # trailers, or a body nothing asked for: pass through

    def _request_headers(self, stream: _Stream, request: ProcessingRequest) -> bytes:
        """Find the route and caller; switch off every part the route's plan does not mask."""
        message = request.request_headers
        headers = stream.request_headers = _read_headers(message.headers)
        stream.route = route = self._route(headers, _port(request))
        plan: MaskPlan | None = route.mask if route is not None else None
        if route is None or plan is None or not (plan.response or plan.request):
            return _REQUEST_HEADERS[False, False]
        stream.plan = plan
        stream.principal = headers.get(PRINCIPAL_HEADER) or None
        roles = headers.get(ROLES_HEADER, "")
        stream.roles = frozenset(r for r in (s.strip() for s in roles.split(",")) if r)
        if plan.exempt(stream.principal, stream.roles):
            self.metrics.mask_skipped(route.policy.name, route.id, "exempt")
            return _REQUEST_HEADERS[False, False]
        stream.mask_response = plan.response
        if plan.request and not message.end_of_stream:
            reason = unmaskable(headers, plan)
            if reason is None:
                stream.mask_request = True
            else:
                self.metrics.mask_skipped(route.policy.name, route.id, reason)
        return _REQUEST_HEADERS[stream.mask_request, stream.mask_response]

    def _route(self, headers: Mapping[str, str], port: int) -> CompiledRoute | None:
        """The request's route, looked up as evaluate() does (None: no route, no policy)."""
        snapshot = self.holder.snapshot
        if snapshot is None:
            return None
        try:
            segments = split_path(headers.get(":path", ""))
        except BadRequestError:
            return None  # ext_authz refused it already; nothing of it reaches an upstream
        host = normalise_host(headers.get(":authority") or headers.get("host", ""))
        return snapshot.index.lookup(host, port, segments, headers.get(":method", "").upper())

    def _response_headers(self, stream: _Stream, request: ProcessingRequest) -> bytes:
        """Keep the body coming only when it may be masked (see unmaskable)."""
        message = request.response_headers
        headers = stream.response_headers = _read_headers(message.headers)
        route, plan = stream.route, stream.plan
        if message.end_of_stream:
            return _RESPONSE_HEADERS  # no body follows (HEAD, 204, 304)
        if not stream.mask_response or route is None or plan is None:
            return _RESPONSE_HEADERS_NO_BODY  # e.g. no request headers seen: nothing to mask
        reason = unmaskable(headers, plan)
        if reason is None:
            return _RESPONSE_HEADERS  # the body follows, BUFFERED
        stream.mask_response = False
        self.metrics.mask_skipped(route.policy.name, route.id, reason)
        return _RESPONSE_HEADERS_NO_BODY

    def _body(self, stream: _Stream, kind: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        """Mask a whole (BUFFERED) body; count what was masked or why it was skipped."""
        route, plan = stream.route, stream.plan
        if route is None or plan is None:
            return _UNCHANGED[kind]
        began = time.time_ns()
        outcome = self.masker(
            plan,
            body,
            content_type=headers.get("content-type", ""),
            content_encoding=headers.get("content-encoding", ""),
            principal=stream.principal,
            roles=stream.roles,
            key=self.key,
        )
        if self.tracing is not None:
            self._trace(stream, kind, len(body), outcome, began)
        policy = route.policy.name
        for label, n in outcome.counts.items():
            if n:
                self.metrics.masked(policy, route.id, label, n)
        if outcome.skipped is not None:
            self.metrics.mask_skipped(policy, route.id, outcome.skipped)
            if outcome.skipped == ENGINE_ERROR:  # a bug, not bad input: the failure mode decides
                raise MaskingError(f"mask_body failed on route {route.id}")
        if outcome.body is None:
            return _UNCHANGED[kind]
        return _body_answer(kind, outcome.body)

    def _trace(
        self, stream: _Stream, kind: str, size: int, outcome: MaskOutcome, began: int
    ) -> None:
        """The masking call's span, joined to the request's trace (from its headers)."""
        assert self.tracing is not None  # noqa: S101 - checked by the caller
        try:
            span = self.tracing.mask_span(stream.request_headers, began)
            if span.is_recording():
                route = stream.route
                span.set_attributes(
                    {
                        "guardrail.route": route.id if route is not None else "",
                        "guardrail.mask.direction": kind.partition("_")[0],
                        "guardrail.mask.body_bytes": size,
                        "guardrail.mask.masked": sum(outcome.counts.values()),
                        "guardrail.mask.skipped": outcome.skipped or "",
                    }
                )
            span.end()
        except Exception:  # tracing must never cost an answer
            log.exception("tracing a masking call failed")

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        """A generic handler for ExternalProcessor/Process (stream-stream, raw bytes)."""
        method = grpc.stream_stream_rpc_method_handler(self.process)
        return grpc.method_handlers_generic_handler(SERVICE, {"Process": method})
