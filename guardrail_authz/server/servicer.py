"""The Authorization/Check handler: bytes in, decision, audit and metrics, bytes out."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import grpc

from guardrail_authz.audit import AuditLog
from guardrail_authz.engine.decision import GUARDRAIL_PREFIX, Decision, DecisionIds
from guardrail_authz.engine.evaluate import evaluate, reject, settle
from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.engine.redislimit import RedisLimiter
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.server.batch import DEFAULT_WAIT, Batcher
from guardrail_authz.server.encode import encode_allow
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.response import to_check_response
from guardrail_authz.server.tracing import Tracing
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckRequest

log = logging.getLogger(__name__)
SERVICE = "envoy.service.auth.v3.Authorization"
MAX_HEADER_BYTES = 256 * 1024
_DETECTED = "_detected"
Answer = bytes | tuple[Decision, RequestView | None, float]  # encoded, or pending a count
_GUARDRAIL_BYTES = GUARDRAIL_PREFIX.encode()


def _guardrail_names(payload: bytes, headers: Mapping[str, str]) -> tuple[str, ...] | None:
    """Header names starting with x-guardrail-, read from the serialized request; None when
    an occurrence of the prefix is not explained by a header name (evaluation then scans).

    A header name is a map entry's key: tag 0x0a (field 1, length-delimited), a one-byte
    length (names under 128 bytes), then the name's bytes.
    """
    i = payload.find(_GUARDRAIL_BYTES)
    names: list[str] = []
    while i != -1:
        if i < 2 or payload[i - 2] != 0x0A:
            return None
        try:
            name = payload[i : i + payload[i - 1]].decode()
        except UnicodeDecodeError:
            return None
        if not name.startswith(GUARDRAIL_PREFIX) or name not in headers or name in names:
            return None
        names.append(name)
        i = payload.find(_GUARDRAIL_BYTES, i + len(name))
    return tuple(names)


def view_from_check(req: CheckRequest, payload: bytes | None = None) -> RequestView:
    """Map Envoy's AttributeContext onto a RequestView (absent fields become empty).

    `payload`, the serialized request, lets the x-guardrail-* header names (spoofing
    attempts, stripped on allow) be found by a C-level search of its bytes instead of a
    Python pass over every header name.
    """
    attrs = req.attributes
    http = attrs.request.http
    # The protobuf map is used as it is: copying ~25 headers into a dict costs more than the
    # few lookups evaluation makes (bench/stages.py). Envoy sends its names lower-case.
    headers: Mapping[str, str] = http.headers
    guardrail_names = None if payload is None else _guardrail_names(payload, headers)
    if not len(headers) and len(http.header_map.headers):
        guardrail_names = None  # names lower-cased below: evaluation scans them
        headers = {
            hv.key.lower(): hv.raw_value.decode("utf-8", "replace") if hv.raw_value else hv.value
            for hv in http.header_map.headers
        }
    body = http.raw_body or http.body.encode("utf-8", "surrogateescape")
    return RequestView(
        method=http.method,
        raw_path=http.path,
        host=http.host or headers.get(":authority", ""),
        headers=headers,
        port=attrs.destination.address.socket_address.port_value,
        source_principal=attrs.source.principal,
        body=body,
        request_id=http.id or headers.get("x-request-id", ""),
        guardrail_names=guardrail_names,
        source_address=lambda: attrs.source.address.socket_address.address,
    )


class CheckService:
    """Decides every Check; always answers a CheckResponse, never an error status."""

    def __init__(
        self,
        holder: SnapshotHolder,
        audit: AuditLog,
        metrics: Metrics,
        runtime: Runtime | None = None,
        shared: RedisLimiter | None = None,
        batch_wait: float = DEFAULT_WAIT,
        tracing: Tracing | None = None,
    ) -> None:
        self.holder = holder
        self.tracing = tracing
        self.audit = audit
        self.metrics = metrics
        self.runtime = runtime if runtime is not None else Runtime(LocalLimiter())
        self.shared = shared
        self.ids = DecisionIds()
        self.batcher: Batcher[tuple[bytes, float], Answer] | None = (
            Batcher(self._complete_or_pending, batch_wait) if batch_wait > 0 else None
        )

    def decide(self, payload: bytes) -> tuple[Decision, RequestView | None]:
        """Parse, evaluate; malformed input and internal failures become denials."""
        did = self.ids.next()
        snapshot = self.holder.snapshot
        version = snapshot.version if snapshot else "none"
        try:
            req = CheckRequest.FromString(payload)
        except Exception:  # noqa: BLE001 - any parse failure, e.g. invalid UTF-8 in a string
            log.warning("malformed CheckRequest (%d bytes), decision %s", len(payload), did)
            return reject(version, did, 400, "malformed_request", "malformed check request"), None
        try:
            view = view_from_check(req, payload)
        except Exception:
            log.exception("could not read CheckRequest attributes, decision %s", did)
            return reject(version, did, 400, "malformed_request", "malformed check request"), None
        if not view.method:
            return reject(version, did, 400, "missing_attributes", "no HTTP attributes"), view
        if len(payload) - len(view.body) > MAX_HEADER_BYTES:  # all but the body: headers, path
            return reject(version, did, 431, "headers_too_large", "headers too large"), view
        if snapshot is None:
            return reject(version, did, 503, "no_policy_loaded", "no valid policy loaded"), view
        return evaluate(snapshot, view, did, self.runtime), view

    async def check(self, payload: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """The gRPC handler (raw bytes so malformed requests still get a CheckResponse).

        Under load, Checks that arrive close together are decided together (server/batch.py);
        an idle server decides each one at once."""
        start = time.perf_counter()
        if self.batcher is not None:
            result = await self.batcher.submit((payload, start))
        else:
            result = self._complete_or_pending((payload, start))
        if isinstance(result, bytes):
            return result
        decision, view, start = result  # a shared-store rate limit: counted here, then answered
        try:
            decision = await self._count(decision)
            if self.tracing is not None:
                self._trace(decision, view, start)
            out = self._encode(decision)
        except Exception:
            log.exception("Check failed unexpectedly")
            decision, view = reject("unknown", self.ids.next(), 500, "internal_error", ""), None
            out = to_check_response(decision).SerializeToString()
        self._account(decision, view, start)
        return out

    def _complete_or_pending(self, item: tuple[bytes, float]) -> Answer:
        """The encoded answer, with metrics and audit done; or, for a call whose rate limits
        live in the shared store, the pending decision to count before answering."""
        payload, start = item
        try:
            began = time.perf_counter()  # after any wait in a batch
            decision, view = self.decide(payload)
            if decision.pending is not None:
                return decision, view, start
            decided = time.perf_counter()
            self.metrics.stage("decide", decided - began)
            if self.tracing is not None:
                self._trace(decision, view, start)
                decided = time.perf_counter()  # the span is not part of encoding
            out = self._encode(decision)
            self.metrics.stage("encode", time.perf_counter() - decided)
        except Exception:  # last line of defence: still a well-formed fail-closed answer
            log.exception("Check failed unexpectedly")
            decision, view = reject("unknown", self.ids.next(), 500, "internal_error", ""), None
            out = to_check_response(decision).SerializeToString()
        self._account(decision, view, start)
        return out

    def _trace(self, decision: Decision, view: RequestView | None, start: float) -> None:
        """The Check's span (may add `traceparent` to an allow's upstream headers)."""
        assert self.tracing is not None  # noqa: S101 - checked by the callers
        now = time.time_ns()
        began = now - int((time.perf_counter() - start) * 1e9)
        try:
            self.tracing.check(decision, view, began, now)
        except Exception:  # tracing must never cost a decision
            log.exception("tracing failed for decision %s", decision.decision_id)

    @staticmethod
    def _encode(decision: Decision) -> bytes:
        if decision.allowed:
            return encode_allow(decision)
        return to_check_response(decision).SerializeToString()

    def _account(self, decision: Decision, view: RequestView | None, start: float) -> None:
        elapsed = time.perf_counter() - start
        metrics = self.metrics
        policy, route, reason = decision.policy or "", decision.route or "", decision.reason
        metrics.decision(policy, route, decision.action or "", decision.allowed, reason, elapsed)
        if decision.payload_seconds:
            metrics.stage("payload", decision.payload_seconds)
            _count_detections(metrics, decision, policy, route)
        if decision.monitored:
            for w in decision.monitored:
                metrics.would_deny(policy, route, w.rule or "", w.reason)
        if reason == "rate_limited":
            metrics.rate_limited(policy, route)
        try:
            self.audit.record(decision, view, elapsed)
        except Exception:
            log.exception("audit write failed for decision %s", decision.decision_id)

    async def _count(self, decision: Decision) -> Decision:
        """Count a pending allow's limits in the shared store and settle it."""
        pending = decision.pending
        if self.shared is None or pending is None:  # no store configured: fail closed
            return settle(decision, None, fail_open=False)
        outcome = await self.shared.acquire(pending.scope, pending.limits)
        if outcome is None:
            self.metrics.store_errors.inc()
        return settle(decision, outcome, fail_open=self.shared.fail_open)

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        """A generic handler for Authorization/Check with byte-level (de)serialization."""
        method = grpc.unary_unary_rpc_method_handler(self.check)
        return grpc.method_handlers_generic_handler(SERVICE, {"Check": method})


def _count_detections(metrics: Metrics, d: Decision, policy: str, route: str) -> None:
    """Detector findings of a decision: a refusal by a detector in block mode (its reason is
    `<detector>_detected`) and the `monitor:<detector>_detected:<field>` reasons."""
    if d.reason.endswith(_DETECTED):
        metrics.detection(policy, route, d.reason.removesuffix(_DETECTED), "block")
    for r in d.reasons:
        if r.startswith("monitor:"):
            metrics.detection(policy, route, r[8:].partition(_DETECTED)[0], "monitor")
