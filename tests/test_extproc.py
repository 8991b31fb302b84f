"""The ext_proc service over a real grpc aio server and channel: masking, skips, failures."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from guardrail_authz.payload.mask import MaskOutcome, MaskPlan, mask_body
from guardrail_authz.policy.compile_mask import compile_mask
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.parse_mask import mask_spec
from guardrail_authz.policy.pathtrie import ANY_METHOD, parse_template
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.snapshot import (
    CompiledPolicy,
    CompiledRoute,
    Mutations,
    PolicySnapshot,
    RouteIndex,
)
from guardrail_authz.policy.yamlsrc import load_documents
from guardrail_authz.server.extproc import SERVICE, ExtProcService, MaskMetrics, unmaskable
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.wire.envoy.config.core.v3 import base_pb2
from guardrail_authz.wire.envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import (
    ProcessingMode,
)
from guardrail_authz.wire.envoy.service.ext_proc.v3 import external_processor_pb2 as ep

METHOD = f"/{SERVICE}/Process"
KEY = b"mask-key-for-tests"
HOST = "api.example.com"
POLICY = CompiledPolicy(
    name="users", version="1", fail_open=False, key_headers=(), strip_keys=False, keys={}
)
PM = ProcessingMode
HVO = base_pb2.HeaderValueOption


# --- mask plans (the real engine's) and a stand-in masker ---------------------------------


def compile_plan(text: str) -> MaskPlan:
    """A route's `mask:` section, parsed and compiled as the policy loader does."""
    sink = ErrorSink()
    ((doc, line),) = load_documents(text, "routes.yaml", sink)
    spec = mask_spec(Reader(doc, "mask", "routes.yaml", sink, line))
    plan = compile_mask(spec, POLICY.name, sink)
    assert not sink.errors
    assert plan is not None
    return plan


SSN = '{path: "$.ssn", style: redact}'
PLANS = {
    "users/get": compile_plan(f"fields: [{SSN}]"),
    "users/create": compile_plan(f"{{response: false, request: true, fields: [{SSN}]}}"),
    "both": compile_plan(f"{{request: true, fields: [{SSN}]}}"),
    "off": MaskPlan(response=False, request=False),  # the parser refuses it; built directly
    "staff": compile_plan(
        f"{{exempt: {{principals: ['audit-*'], roles: [admin]}}, fields: [{SSN}]}}"
    ),
    "zipped": compile_plan(f"{{compressed: skip, fields: [{SSN}]}}"),
    "small": compile_plan(f"{{maxBytes: 64, fields: [{SSN}]}}"),
    "cards": compile_plan(
        "detectors: [{detector: card, style: partial}, {detector: email, style: hash}]"
    ),
}


@dataclass(slots=True)
class FakeMasker:
    """Redacts top-level "ssn" values of a JSON object; raises on a body containing "boom"."""

    calls: list[dict[str, Any]] = field(default_factory=list)

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
        self.calls.append(
            {
                "plan": plan,
                "body": body,
                "content_type": content_type,
                "content_encoding": content_encoding,
                "principal": principal,
                "roles": roles,
                "key": key,
            }
        )
        if b"boom" in body:
            raise RuntimeError("masker bug")
        if b"caught" in body:  # what mask_body answers when it caught an exception itself
            return MaskOutcome(None, {}, "error")
        try:
            doc = json.loads(body)
        except ValueError:
            return MaskOutcome(None, {}, "malformed_json")
        if not isinstance(doc, dict) or "ssn" not in doc:
            return MaskOutcome(None, {})
        doc["ssn"] = "[redacted]"
        return MaskOutcome(json.dumps(doc).encode(), {"field:$.ssn": 1, "detector:email": 0})


@dataclass(slots=True)
class Recorder:
    """The two mask counters, recorded."""

    masked_calls: list[tuple[str, str, str, int]] = field(default_factory=list)
    skipped_calls: list[tuple[str, str, str]] = field(default_factory=list)

    def masked(self, policy: str, route: str, rule: str, n: int) -> None:
        """Record a masked count."""
        self.masked_calls.append((policy, route, rule, n))

    def mask_skipped(self, policy: str, route: str, reason: str) -> None:
        """Record a skip."""
        self.skipped_calls.append((policy, route, reason))


@dataclass(frozen=True, slots=True)
class MaskedRoute(CompiledRoute):
    """A compiled route carrying a mask plan (what CompiledRoute.mask will hold)."""

    mask: MaskPlan | None = None


def _route(route_id: str) -> MaskedRoute:
    return MaskedRoute(
        id=route_id,
        name=route_id,
        action="read",
        policy=POLICY,
        deny_rules=(),
        allow_rules=(),
        identity_required=False,
        uses_identity=False,
        mutations=Mutations(),
        mask=PLANS.get(route_id),
    )


ROUTES: list[tuple[int, str, str, MaskedRoute]] = [
    (0, "/users/{id}", "GET", _route("users/get")),
    (0, "/users", "POST", _route("users/create")),
    (0, "/both", ANY_METHOD, _route("both")),
    (0, "/plain", "GET", _route("plain")),  # no mask section
    (0, "/off", "GET", _route("off")),
    (0, "/staff", "GET", _route("staff")),
    (0, "/zipped", "GET", _route("zipped")),
    (0, "/small", "GET", _route("small")),
    (0, "/cards", "GET", _route("cards")),
    (8443, "/ported", "GET", _route("users/get")),
]


def _holder(tmp_path: Path, loaded: bool = True) -> SnapshotHolder:
    index = RouteIndex()
    for port, template, method, route in ROUTES:
        assert index.trie(HOST, port).insert(parse_template(template), method, route) is None
    holder = SnapshotHolder(tmp_path, Metrics())
    if loaded:
        holder.snapshot = PolicySnapshot(
            version="v1",
            content_hash="h",
            policies=(("users", "1"),),
            index=index,
            route_count=len(ROUTES),
            files=(),
            stage_seconds={},
        )
    return holder


# --- messages ---------------------------------------------------------------------------


def _header_map(headers: Mapping[str, str], raw: bool = True) -> base_pb2.HeaderMap:
    """Headers as Envoy sends them (raw_value), or as older Envoys did (value)."""
    return base_pb2.HeaderMap(
        headers=[
            base_pb2.HeaderValue(key=k, raw_value=v.encode())
            if raw
            else base_pb2.HeaderValue(key=k, value=v)
            for k, v in headers.items()
        ]
    )


def request_headers(
    path: str,
    method: str = "GET",
    *,
    end_of_stream: bool = True,
    raw: bool = True,
    port: int | None = None,
    authority: str = HOST,
    **extra: str,
) -> ep.ProcessingRequest:
    """A request_headers message (extra headers by keyword, underscores for dashes)."""
    headers = {":method": method, ":path": path, ":authority": authority, ":scheme": "http"}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    message = ep.ProcessingRequest(
        request_headers=ep.HttpHeaders(
            headers=_header_map(headers, raw), end_of_stream=end_of_stream
        )
    )
    if port is not None:
        attributes = struct_pb2.Struct()
        attributes.update({"destination.port": port})
        message.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    return message


def response_headers(
    content_type: str = "application/json", *, end_of_stream: bool = False, **extra: str
) -> ep.ProcessingRequest:
    """A response_headers message."""
    headers = {":status": "200", "content-type": content_type}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return ep.ProcessingRequest(
        response_headers=ep.HttpHeaders(headers=_header_map(headers), end_of_stream=end_of_stream)
    )


def body(member: str, data: bytes) -> ep.ProcessingRequest:
    """A request_body or response_body message with the whole (BUFFERED) body."""
    message = ep.ProcessingRequest()
    getattr(message, member).CopyFrom(ep.HttpBody(body=data, end_of_stream=True))
    return message


# --- the server ---------------------------------------------------------------------------


@dataclass(slots=True)
class Harness:
    """A running server, its service's fakes and a channel to it."""

    channel: grpc.aio.Channel
    masker: FakeMasker
    metrics: Recorder

    def open(self) -> grpc.aio.StreamStreamCall[ep.ProcessingRequest, ep.ProcessingResponse]:
        """A new Process stream with our generated message classes."""
        call: grpc.aio.StreamStreamCall[ep.ProcessingRequest, ep.ProcessingResponse] = (
            self.channel.stream_stream(
                METHOD,
                request_serializer=ep.ProcessingRequest.SerializeToString,
                response_deserializer=ep.ProcessingResponse.FromString,
            )(None)
        )
        return call


@asynccontextmanager
async def serving(
    holder: SnapshotHolder, metrics: MaskMetrics | None = None, real: bool = False
) -> AsyncIterator[Harness]:
    """The service on a real grpc aio server on a free loopback port (real: with the real
    masking engine instead of FakeMasker)."""
    masker, recorder = FakeMasker(), Recorder()
    service = ExtProcService(holder, metrics or recorder, KEY, masker=None if real else masker)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([service.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Harness(channel, masker, recorder)
    finally:
        await server.stop(None)


Scenario = Callable[[Harness], Any]


def run(
    tmp_path: Path,
    scenario: Scenario,
    loaded: bool = True,
    metrics: MaskMetrics | None = None,
    real: bool = False,
) -> None:
    """Run one async scenario against a fresh server."""

    async def main() -> None:
        async with serving(_holder(tmp_path, loaded), metrics, real) as harness:
            await asyncio.wait_for(scenario(harness), timeout=10)

    asyncio.run(main())


async def exchange(
    call: grpc.aio.StreamStreamCall[ep.ProcessingRequest, ep.ProcessingResponse],
    message: ep.ProcessingRequest,
) -> ep.ProcessingResponse:
    """Send one message and read its answer."""
    await call.write(message)
    answer = await call.read()
    assert isinstance(answer, ep.ProcessingResponse)
    return answer


async def finish(
    call: grpc.aio.StreamStreamCall[ep.ProcessingRequest, ep.ProcessingResponse],
) -> None:
    """Half-close like Envoy at the end of a request; the stream ends OK with no more answers."""
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF  # type: ignore[attr-defined]  # not in the stubs
    assert await call.code() == grpc.StatusCode.OK


def modes(answer: ep.ProcessingResponse) -> tuple[int, int, int, int]:
    """(request body, response headers, response body, request headers) of a mode_override."""
    m = answer.mode_override
    return (
        m.request_body_mode,
        m.response_header_mode,
        m.response_body_mode,
        m.request_header_mode,
    )


SKIP_ALL = (PM.NONE, PM.SKIP, PM.NONE, PM.DEFAULT)
MASK_RESPONSE = (PM.NONE, PM.SEND, PM.BUFFERED, PM.DEFAULT)


def _set_headers(common: ep.CommonResponse) -> list[tuple[str, str, bytes, int]]:
    return [
        (o.header.key, o.header.value, o.header.raw_value, o.append_action)
        for o in common.header_mutation.set_headers
    ]


# --- tests --------------------------------------------------------------------------------


def test_json_response_is_masked_with_a_matching_content_length(tmp_path: Path) -> None:
    """The full flow: buffered response body masked, content-length set to the new length."""
    original = b'{"name": "Ann",   "ssn": "078-05-1120"}'

    async def scenario(h: Harness) -> None:
        call = h.open()
        first = await exchange(
            call,
            request_headers(
                "/users/7?expand=1", x_guardrail_principal="alice", x_guardrail_roles="user, ops"
            ),
        )
        assert first.WhichOneof("response") == "request_headers"
        assert not first.request_headers.HasField("response")  # no change to the request
        assert modes(first) == MASK_RESPONSE
        second = await exchange(
            call, response_headers(content_length=str(len(original)), content_encoding="gzip")
        )
        assert second.WhichOneof("response") == "response_headers"
        assert not second.HasField("mode_override")  # the body follows, BUFFERED
        third = await exchange(call, body("response_body", original))
        assert third.WhichOneof("response") == "response_body"
        common = third.response_body.response
        masked = common.body_mutation.body
        assert json.loads(masked) == {"name": "Ann", "ssn": "[redacted]"}
        assert len(masked) != len(original)
        assert _set_headers(common) == [
            ("content-length", "", str(len(masked)).encode(), HVO.OVERWRITE_IF_EXISTS_OR_ADD)
        ]
        assert common.status == ep.CommonResponse.CONTINUE
        await finish(call)
        (seen,) = h.masker.calls
        assert seen["body"] == original
        assert (seen["content_type"], seen["content_encoding"]) == ("application/json", "gzip")
        assert (seen["principal"], seen["roles"], seen["key"]) == (
            "alice",
            frozenset({"user", "ops"}),
            KEY,
        )
        assert seen["plan"] is ROUTES[0][3].mask
        assert h.metrics.masked_calls == [("users", "users/get", "field:$.ssn", 1)]
        assert h.metrics.skipped_calls == []

    run(tmp_path, scenario)


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_the_real_engine_masks_through_the_service(tmp_path: Path, encoding: str) -> None:
    """With the default masker (payload.mask.mask_body): detector matches masked, gzip kept,
    and the content-length Envoy receives is the new (compressed) body's length."""
    doc = {"card": "4111 1111 1111 1111", "contact": "ann@example.com", "note": "hi"}
    plain = json.dumps(doc).encode()
    original = gzip.compress(plain) if encoding else plain
    expected = mask_body(
        PLANS["cards"],
        original,
        content_type="application/json",
        content_encoding=encoding,
        principal="alice",
        roles=frozenset(),
        key=KEY,
    )
    assert expected.body is not None

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/cards", x_guardrail_principal="alice"))
        await exchange(
            call, response_headers(content_encoding=encoding, content_length=str(len(original)))
        )
        answer = await exchange(call, body("response_body", original))
        common = answer.response_body.response
        new = common.body_mutation.body
        assert new == expected.body
        assert _set_headers(common)[0][2] == str(len(new)).encode()
        text = gzip.decompress(new) if encoding else new
        masked = json.loads(text)
        assert "4111 1111 1111 1111" not in text.decode()
        assert masked["card"].endswith("1111")
        assert "ann@example.com" not in text.decode()
        assert masked["note"] == "hi"
        await finish(call)
        assert h.masker.calls == []  # the fake was not used
        assert sorted(h.metrics.masked_calls) == sorted(
            ("users", "cards", label, n) for label, n in expected.counts.items()
        )

    run(tmp_path, scenario, real=True)


def test_body_the_masker_leaves_alone_is_answered_without_mutation(tmp_path: Path) -> None:
    """No change (or a skip reported by the masker) → an empty BodyResponse; skip counted."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/users/7"))
        await exchange(call, response_headers())
        answer = await exchange(call, body("response_body", b'{"name": "Ann"}'))
        assert answer.WhichOneof("response") == "response_body"
        assert not answer.response_body.HasField("response")
        await finish(call)
        call = h.open()
        await exchange(call, request_headers("/users/8"))
        await exchange(call, response_headers())
        answer = await exchange(call, body("response_body", b'{"name": '))
        assert not answer.response_body.HasField("response")
        await finish(call)
        assert h.metrics.masked_calls == []
        assert h.metrics.skipped_calls == [("users", "users/get", "malformed_json")]

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/plain", "GET"),  # a route without a mask section
        ("/off", "GET"),  # a plan that masks neither direction
        ("/users", "POST"),  # a plan that masks requests, but this one has no body
        ("/nowhere", "GET"),  # no route at all
        ("/users/7", "DELETE"),  # the path matches, the method does not
        ("/../etc", "GET"),  # a path ext_authz refuses: no route
    ],
)
def test_requests_no_rule_touches_switch_the_stream_off(
    tmp_path: Path, path: str, method: str
) -> None:
    """Envoy is told to skip response headers and bodies: nothing is copied to us."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        answer = await exchange(call, request_headers(path, method))
        assert answer.WhichOneof("response") == "request_headers"
        assert not answer.request_headers.HasField("response")
        assert modes(answer) == SKIP_ALL
        await finish(call)
        assert h.masker.calls == []
        assert h.metrics.skipped_calls == []

    run(tmp_path, scenario)


def test_without_a_loaded_policy_nothing_is_masked(tmp_path: Path) -> None:
    """Before the first policy load every stream is switched off (ext_authz denies anyway)."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        assert modes(await exchange(call, request_headers("/users/7"))) == SKIP_ALL
        await finish(call)

    run(tmp_path, scenario, loaded=False)


@pytest.mark.parametrize(
    ("principal", "roles", "exempt"),
    [
        ("bob", "admin", True),
        ("bob", "user,admin ", True),
        ("audit-7", "", True),
        ("bob", "user", False),
        ("", "", False),
    ],
)
def test_exempt_callers_are_switched_off(
    tmp_path: Path, principal: str, roles: str, exempt: bool
) -> None:
    """A caller the plan exempts (by the roles ext_authz set) gets the response unmasked."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        answer = await exchange(
            call,
            request_headers("/staff", x_guardrail_principal=principal, x_guardrail_roles=roles),
        )
        assert modes(answer) == (SKIP_ALL if exempt else MASK_RESPONSE)
        await finish(call)
        expected = [("users", "staff", "exempt")] if exempt else []
        assert h.metrics.skipped_calls == expected

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("path", "content_type", "encoding", "length", "reason"),
    [
        ("/users/7", "text/html; charset=utf-8", "", "", "not_json"),
        ("/users/7", "", "", "", "not_json"),
        ("/users/7", "application/octet-stream", "", "", "not_json"),
        ("/users/7", "json", "", "", "not_json"),
        ("/users/7", "application/json", "br", "", "unsupported_encoding"),
        ("/users/7", "application/json", "gzip, br", "", "unsupported_encoding"),
        ("/zipped", "application/json", "gzip", "", "compressed"),
        ("/small", "application/json", "", "65", "too_large"),
    ],
)
def test_unmaskable_response_turns_the_body_off(
    tmp_path: Path, path: str, content_type: str, encoding: str, length: str, reason: str
) -> None:
    """Non-JSON, an unreadable encoding, compression the plan skips or a declared length over
    its maxBytes: response_body_mode NONE, skip counted, Envoy buffers nothing."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers(path))
        answer = await exchange(
            call, response_headers(content_type, content_encoding=encoding, content_length=length)
        )
        assert answer.WhichOneof("response") == "response_headers"
        assert not answer.response_headers.HasField("response")
        assert answer.HasField("mode_override")
        assert answer.mode_override.response_body_mode == PM.NONE
        assert answer.mode_override.request_body_mode == PM.NONE
        assert answer.mode_override.response_header_mode == PM.DEFAULT  # unchanged
        await finish(call)
        route = "users/get" if path == "/users/7" else path[1:]
        assert h.metrics.skipped_calls == [("users", route, reason)]
        assert h.masker.calls == []

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("plan", "headers"),
    [
        ("users/get", {"content-type": "application/json"}),
        ("users/get", {"content-type": "Application/JSON; charset=utf-8"}),
        ("users/get", {"content-type": "application/problem+json", "content-encoding": "gzip"}),
        ("users/get", {"content-type": "application/vnd.api+json", "content-encoding": "deflate"}),
        ("users/get", {"content-type": "application/json", "content-encoding": "identity"}),
        ("small", {"content-type": "application/json", "content-length": "64"}),
        ("zipped", {"content-type": "application/json", "content-length": "chunked?"}),
    ],
)
def test_maskable_headers(plan: str, headers: dict[str, str]) -> None:
    """JSON and +json media types, identity or (when the plan decompresses) gzip/deflate,
    within maxBytes or of unknown length: the body goes to the masker."""
    assert unmaskable(headers, PLANS[plan]) is None


def test_response_without_body_needs_no_body_mode(tmp_path: Path) -> None:
    """Headers that end the response (HEAD, 204) are answered unchanged, nothing skipped."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/users/7"))
        answer = await exchange(call, response_headers("text/html", end_of_stream=True))
        assert not answer.HasField("mode_override")
        await finish(call)
        assert h.metrics.skipped_calls == []

    run(tmp_path, scenario)


def test_response_headers_without_a_masked_request_turn_the_body_off(tmp_path: Path) -> None:
    """Response headers on a stream that masks nothing (no request headers were processed,
    e.g. a mode override Envoy did not apply) switch the response body off."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        answer = await exchange(call, response_headers())
        assert answer.WhichOneof("response") == "response_headers"
        assert answer.HasField("mode_override")
        assert answer.mode_override.response_body_mode == PM.NONE
        answer = await exchange(call, body("response_body", b'{"ssn": "1"}'))
        assert not answer.response_body.HasField("response")  # answered, untouched
        await finish(call)
        assert h.masker.calls == []
        assert h.metrics.skipped_calls == []

    run(tmp_path, scenario)


def test_request_body_is_masked_when_the_plan_asks(tmp_path: Path) -> None:
    """A request-masking plan buffers the request body and masks it like a response."""
    original = b'{"ssn": "078-05-1120", "plan": "gold"}'

    async def scenario(h: Harness) -> None:
        call = h.open()
        first = await exchange(
            call,
            request_headers(
                "/users",
                "POST",
                end_of_stream=False,
                content_type="application/json",
                x_guardrail_principal="svc",
            ),
        )
        assert modes(first) == (PM.BUFFERED, PM.SKIP, PM.NONE, PM.DEFAULT)
        answer = await exchange(call, body("request_body", original))
        assert answer.WhichOneof("response") == "request_body"
        common = answer.request_body.response
        assert json.loads(common.body_mutation.body) == {"ssn": "[redacted]", "plan": "gold"}
        assert _set_headers(common) == [
            (
                "content-length",
                "",
                str(len(common.body_mutation.body)).encode(),
                HVO.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ]
        await finish(call)
        assert h.masker.calls[0]["principal"] == "svc"
        assert h.metrics.masked_calls == [("users", "users/create", "field:$.ssn", 1)]

    run(tmp_path, scenario)


def test_both_directions_and_a_non_json_request(tmp_path: Path) -> None:
    """A plan masking both ways: a non-JSON request body is skipped, the response still masked."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        first = await exchange(
            call, request_headers("/both", "PUT", end_of_stream=False, content_type="text/plain")
        )
        assert modes(first) == MASK_RESPONSE
        assert h.metrics.skipped_calls == [("users", "both", "not_json")]
        call2 = h.open()
        second = await exchange(
            call2,
            request_headers("/both", "PUT", end_of_stream=False, content_type="application/json"),
        )
        assert modes(second) == (PM.BUFFERED, PM.SEND, PM.BUFFERED, PM.DEFAULT)
        await finish(call)
        await finish(call2)

    run(tmp_path, scenario)


@pytest.mark.parametrize("trigger", [b"boom", b"caught"], ids=["raised", "reported"])
def test_masker_failure_ends_the_stream_with_internal(tmp_path: Path, trigger: bytes) -> None:
    """An exception in the masker, or its "error" outcome → INTERNAL (no detail), so Envoy's
    failure_mode_allow decides; the server keeps serving."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/users/7"))
        await exchange(call, response_headers())
        await call.write(body("response_body", b'{"ssn": "%s"}' % trigger))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call.read()
        assert failed.value.code() == grpc.StatusCode.INTERNAL
        assert failed.value.details() == "guardrail ext_proc failed"
        call = h.open()  # the next request is served as usual
        await exchange(call, request_headers("/users/7"))
        await exchange(call, response_headers())
        answer = await exchange(call, body("response_body", b'{"ssn": "1"}'))
        assert json.loads(answer.response_body.response.body_mutation.body)["ssn"] == "[redacted]"
        await finish(call)
        reported = [("users", "users/get", "error")] if trigger == b"caught" else []
        assert h.metrics.skipped_calls == reported

    run(tmp_path, scenario)


def test_malformed_message_ends_the_stream_with_internal(tmp_path: Path) -> None:
    """Bytes that are not a ProcessingRequest (or one with no member) → INTERNAL."""

    async def scenario(h: Harness) -> None:
        for payload in (b"\xff\xff\xff", ep.ProcessingRequest().SerializeToString()):
            raw = h.channel.stream_stream(METHOD, None, None)(None)
            await raw.write(payload)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await raw.read()
            assert failed.value.code() == grpc.StatusCode.INTERNAL

    run(tmp_path, scenario)


@pytest.mark.parametrize("raw", [True, False], ids=["raw_value", "value"])
def test_header_values_in_raw_value_or_value(tmp_path: Path, raw: bool) -> None:
    """Headers are read from raw_value (Envoy's default) or value; the host is normalised."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        answer = await exchange(
            call,
            request_headers(
                "/users/%37",
                raw=raw,
                authority="API.Example.com:8080",
                x_guardrail_principal="carol",
                x_guardrail_roles="auditor",
            ),
        )
        assert modes(answer) == MASK_RESPONSE
        await exchange(call, response_headers())
        await exchange(call, body("response_body", b'{"ssn": "1"}'))
        await finish(call)
        assert h.masker.calls[0]["principal"] == "carol"
        assert h.masker.calls[0]["roles"] == frozenset({"auditor"})

    run(tmp_path, scenario)


@pytest.mark.parametrize(("port", "masked"), [(8443, True), (8080, False), (None, False)])
def test_port_bound_routes_need_the_destination_port_attribute(
    tmp_path: Path, port: int | None, masked: bool
) -> None:
    """A route bound to a port is found through the destination.port request attribute."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        answer = await exchange(call, request_headers("/ported", port=port))
        assert modes(answer) == (MASK_RESPONSE if masked else SKIP_ALL)
        await finish(call)

    run(tmp_path, scenario)


@pytest.mark.parametrize("member", ["request_trailers", "response_trailers"])
def test_trailers_pass_through(tmp_path: Path, member: str) -> None:
    """Trailers are answered with no mutation."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/users/7"))
        message = ep.ProcessingRequest()
        getattr(message, member).trailers.headers.add(key="grpc-status", raw_value=b"0")
        answer = await exchange(call, message)
        assert answer.WhichOneof("response") == member
        assert not getattr(answer, member).HasField("header_mutation")
        await finish(call)

    run(tmp_path, scenario)


def test_observability_mode_gets_no_answers(tmp_path: Path) -> None:
    """Envoy ignores answers in observability mode, so none is sent; the stream ends OK."""

    async def scenario(h: Harness) -> None:
        call = h.open()
        message = request_headers("/users/7")
        message.observability_mode = True
        await call.write(message)
        await finish(call)

    run(tmp_path, scenario)


def test_the_server_metrics_count_masked_values_and_skips(tmp_path: Path) -> None:
    """The process's Metrics take the service's counts (guardrail_masked_values etc.)."""
    metrics = Metrics()

    async def scenario(h: Harness) -> None:
        call = h.open()
        await exchange(call, request_headers("/users/7"))
        await exchange(call, response_headers())
        await exchange(call, body("response_body", b'{"ssn": "1"}'))
        await finish(call)
        call = h.open()
        await exchange(call, request_headers("/staff", x_guardrail_roles="admin"))
        await finish(call)

    run(tmp_path, scenario, metrics=metrics)
    text = metrics.render().decode()
    assert (
        'guardrail_masked_values_total{policy="users",route="users/get",rule="field:$.ssn"} 1.0'
        in text
    )
    assert 'guardrail_mask_skipped_total{policy="users",reason="exempt",route="staff"} 1.0' in text
