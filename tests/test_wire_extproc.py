"""ext_proc messages cross between envoy_data_plane (full Envoy schema) and ours, both ways."""

import datetime
import warnings
from typing import Any

import pytest
from google.protobuf import struct_pb2
from pydantic.warnings import PydanticDeprecatedSince212

from guardrail_authz.wire.envoy.config.core.v3 import base_pb2
from guardrail_authz.wire.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from guardrail_authz.wire.envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from guardrail_authz.wire.envoy.type.v3 import http_status_pb2
from tests.test_wire_conformance import _unknown_field_paths

with warnings.catch_warnings():
    # The oracle's models use a pydantic validator style deprecated in 2.12 (see
    # test_wire_conformance.py): imported once with that warning muted.
    warnings.simplefilter("ignore", PydanticDeprecatedSince212)
    from envoy_data_plane.envoy.config.core import v3 as oracle_core
    from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as oracle_mode
    from envoy_data_plane.envoy.service.ext_proc import v3 as oracle_ep
    from envoy_data_plane.envoy.type import v3 as oracle_type
    from envoy_data_plane.google import protobuf as oracle_pb

PM = processing_mode_pb2.ProcessingMode
HVO = base_pb2.HeaderValueOption
BODY_MODE = oracle_mode.ProcessingModeBodySendMode
HEADER_MODE = oracle_mode.ProcessingModeHeaderSendMode
FILTER = "envoy.filters.http.ext_proc"


def _oracle_header_map() -> Any:
    """Headers as Envoy sends them (raw_value), plus a legacy string value and a duplicate."""
    return oracle_core.HeaderMap(
        headers=[
            oracle_core.HeaderValue(key=":method", raw_value=b"POST"),
            oracle_core.HeaderValue(key=":path", raw_value=b"/v1/users/7?x=1"),
            oracle_core.HeaderValue(key=":authority", raw_value=b"api.example.com:8443"),
            oracle_core.HeaderValue(key="x-dup", raw_value=b"one"),
            oracle_core.HeaderValue(key="x-dup", raw_value=b"two\xff"),
            oracle_core.HeaderValue(key="x-text", value="plain"),
        ]
    )


HEADER_TUPLES = [
    (":method", "", b"POST"),
    (":path", "", b"/v1/users/7?x=1"),
    (":authority", "", b"api.example.com:8443"),
    ("x-dup", "", b"one"),
    ("x-dup", "", b"two\xff"),
    ("x-text", "plain", b""),
]


def _oracle_context() -> dict[str, Any]:
    """The fields every ProcessingRequest may carry besides its oneof member."""
    return {
        "metadata_context": oracle_core.Metadata(
            filter_metadata={
                "envoy.filters.http.ext_authz": oracle_pb.Struct(
                    fields={"decision_id": oracle_pb.Value(string_value="d-9")}
                )
            },
            typed_filter_metadata={
                "typed": oracle_pb.Any(type_url="type.googleapis.com/t.T", value=b"\x08\x02")
            },
        ),
        "attributes": {
            FILTER: oracle_pb.Struct(
                fields={
                    "destination.port": oracle_pb.Value(number_value=8080),
                    "request.id": oracle_pb.Value(string_value="r-1"),
                }
            )
        },
        "observability_mode": True,
        "protocol_config": oracle_ep.ProtocolConfiguration(
            request_body_mode=BODY_MODE.BUFFERED_PARTIAL,
            response_body_mode=BODY_MODE.BUFFERED,
            send_body_without_waiting_for_header_response=True,
        ),
    }


def _check_context(ours: ep.ProcessingRequest) -> None:
    """The context fields of _oracle_context arrived field for field."""
    metadata = ours.metadata_context
    assert dict(metadata.filter_metadata["envoy.filters.http.ext_authz"]) == {"decision_id": "d-9"}
    packed = metadata.typed_filter_metadata["typed"]
    assert (packed.type_url, packed.value) == ("type.googleapis.com/t.T", b"\x08\x02")
    assert dict(ours.attributes[FILTER]) == {"destination.port": 8080, "request.id": "r-1"}
    assert ours.observability_mode is True
    config = ours.protocol_config
    assert config.request_body_mode == PM.BUFFERED_PARTIAL
    assert config.response_body_mode == PM.BUFFERED
    assert config.send_body_without_waiting_for_header_response is True


def _oracle_request(member: str, value: Any) -> Any:
    """An oracle ProcessingRequest with `member` set and every context field."""
    fields: dict[str, Any] = {member: value, **_oracle_context()}
    return oracle_ep.ProcessingRequest(**fields)


def _oracle_headers_request(member: str) -> bytes:
    """A serialized oracle ProcessingRequest carrying HttpHeaders with every field set,
    the deprecated attributes map included (the oracle warns about it)."""
    legacy = {"legacy": oracle_pb.Struct(fields={"k": oracle_pb.Value(bool_value=True)})}
    headers = oracle_ep.HttpHeaders(
        headers=_oracle_header_map(), attributes=legacy, end_of_stream=True
    )
    return bytes(_oracle_request(member, headers))


# --- Envoy -> us ---------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["request_headers", "response_headers"])
def test_headers_message_parses_field_for_field(member: str) -> None:
    """Request or response headers with every field set parse with nothing left unknown."""
    with pytest.warns(DeprecationWarning, match="attributes is deprecated"):  # the oracle warns
        ours = ep.ProcessingRequest.FromString(_oracle_headers_request(member))
    assert _unknown_field_paths(ours) == []
    assert ours.WhichOneof("request") == member
    parsed = getattr(ours, member)
    assert [(h.key, h.value, h.raw_value) for h in parsed.headers.headers] == HEADER_TUPLES
    assert dict(parsed.attributes["legacy"]) == {"k": True}
    assert parsed.end_of_stream is True
    _check_context(ours)


@pytest.mark.parametrize("member", ["request_body", "response_body"])
def test_body_message_parses_field_for_field(member: str) -> None:
    """A body chunk with every flag set parses into the right oneof member."""
    body = oracle_ep.HttpBody(
        body=b'{"ssn": "078-05-1120"}\x00\xff',
        end_of_stream=True,
        end_of_stream_without_message=True,
        grpc_message_compressed=True,
    )
    oracle = _oracle_request(member, body)
    ours = ep.ProcessingRequest.FromString(bytes(oracle))
    assert _unknown_field_paths(ours) == []
    assert ours.WhichOneof("request") == member
    parsed = getattr(ours, member)
    assert parsed.body == b'{"ssn": "078-05-1120"}\x00\xff'
    assert parsed.end_of_stream is True
    assert parsed.end_of_stream_without_message is True
    assert parsed.grpc_message_compressed is True
    _check_context(ours)


@pytest.mark.parametrize("member", ["request_trailers", "response_trailers"])
def test_trailers_message_parses_field_for_field(member: str) -> None:
    """Trailers parse into the right oneof member."""
    trailers = oracle_ep.HttpTrailers(trailers=_oracle_header_map())
    oracle = _oracle_request(member, trailers)
    ours = ep.ProcessingRequest.FromString(bytes(oracle))
    assert _unknown_field_paths(ours) == []
    assert ours.WhichOneof("request") == member
    parsed = getattr(ours, member).trailers.headers
    assert [(h.key, h.value, h.raw_value) for h in parsed] == HEADER_TUPLES
    _check_context(ours)


def test_request_survives_a_round_trip_through_our_classes() -> None:
    """Envoy's bytes, parsed and re-serialized by us, are the same message to Envoy."""
    oracle = oracle_ep.ProcessingRequest(
        request_headers=oracle_ep.HttpHeaders(headers=_oracle_header_map()), **_oracle_context()
    )
    ours = ep.ProcessingRequest.FromString(bytes(oracle))
    assert oracle_ep.ProcessingRequest.parse(ours.SerializeToString()) == oracle


# --- us -> Envoy ---------------------------------------------------------------------------


def _mutation() -> ep.HeaderMutation:
    """A header mutation with every append action and a removal, values in raw_value."""
    return ep.HeaderMutation(
        set_headers=[
            HVO(
                header=base_pb2.HeaderValue(key="content-length", raw_value=b"42"),
                append_action=HVO.OVERWRITE_IF_EXISTS_OR_ADD,
            ),
            HVO(
                header=base_pb2.HeaderValue(key="x-guardrail-masked", raw_value=b"ssn=1"),
                append_action=HVO.ADD_IF_ABSENT,
                keep_empty_value=True,
            ),
            HVO(
                header=base_pb2.HeaderValue(key="x-text", value="v"),
                append_action=HVO.APPEND_IF_EXISTS_OR_ADD,
            ),
            HVO(
                header=base_pb2.HeaderValue(key="x-only", raw_value=b"\xfe"),
                append_action=HVO.OVERWRITE_IF_EXISTS,
            ),
        ],
        remove_headers=["etag", "content-md5"],
    )


def _check_oracle_mutation(mutation: Any) -> None:
    """The oracle sees _mutation() field for field."""
    action = oracle_core.HeaderValueOptionHeaderAppendAction
    assert [
        (o.header.key, o.header.value, o.header.raw_value, o.append_action, o.keep_empty_value)
        for o in mutation.set_headers
    ] == [
        ("content-length", "", b"42", action.OVERWRITE_IF_EXISTS_OR_ADD, False),
        ("x-guardrail-masked", "", b"ssn=1", action.ADD_IF_ABSENT, True),
        ("x-text", "v", b"", action.APPEND_IF_EXISTS_OR_ADD, False),
        ("x-only", "", b"\xfe", action.OVERWRITE_IF_EXISTS, False),
    ]
    assert mutation.remove_headers == ["etag", "content-md5"]


def _full_common() -> ep.CommonResponse:
    """A CommonResponse with every field set."""
    return ep.CommonResponse(
        status=ep.CommonResponse.CONTINUE_AND_REPLACE,
        header_mutation=_mutation(),
        body_mutation=ep.BodyMutation(body=b'{"ssn": "***"}\x00'),
        trailers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key="t", raw_value=b"1")]),
        clear_route_cache=True,
    )


def _check_oracle_common(common: Any) -> None:
    """The oracle sees _full_common() field for field."""
    assert common.status == oracle_ep.CommonResponseResponseStatus.CONTINUE_AND_REPLACE
    _check_oracle_mutation(common.header_mutation)
    assert common.body_mutation.body == b'{"ssn": "***"}\x00'
    assert common.body_mutation.clear_body is None
    assert [(h.key, h.raw_value) for h in common.trailers.headers] == [("t", b"1")]
    assert common.clear_route_cache is True


def _full_mode() -> processing_mode_pb2.ProcessingMode:
    """A ProcessingMode with every field set to a distinct non-default value."""
    return PM(
        request_header_mode=PM.SKIP,
        response_header_mode=PM.SEND,
        request_body_mode=PM.STREAMED,
        response_body_mode=PM.BUFFERED,
        request_trailer_mode=PM.SEND,
        response_trailer_mode=PM.SKIP,
    )


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        ("request_headers", ep.HeadersResponse),
        ("response_headers", ep.HeadersResponse),
        ("request_body", ep.BodyResponse),
        ("response_body", ep.BodyResponse),
    ],
)
def test_headers_and_body_responses_reach_envoy_schema_intact(member: str, kind: Any) -> None:
    """Every CommonResponse field, the mode override, metadata and timeout reach Envoy."""
    ours = ep.ProcessingResponse(
        dynamic_metadata=struct_pb2.Struct(),
        mode_override=_full_mode(),
    )
    getattr(ours, member).CopyFrom(kind(response=_full_common()))
    ours.dynamic_metadata.update({"guardrail": {"masked": 2}})
    ours.override_message_timeout.FromMilliseconds(1500)
    oracle = oracle_ep.ProcessingResponse.parse(ours.SerializeToString())
    for other in ("request_headers", "response_headers", "request_body", "response_body"):
        assert (getattr(oracle, other) is None) == (other != member)
    _check_oracle_common(getattr(oracle, member).response)
    assert oracle.dynamic_metadata is not None
    assert oracle.dynamic_metadata.to_dict() == {"guardrail": {"masked": 2.0}}
    mode = oracle.mode_override
    assert mode is not None
    assert (mode.request_header_mode, mode.response_header_mode) == (
        HEADER_MODE.SKIP,
        HEADER_MODE.SEND,
    )
    assert (mode.request_body_mode, mode.response_body_mode) == (
        BODY_MODE.STREAMED,
        BODY_MODE.BUFFERED,
    )
    assert (mode.request_trailer_mode, mode.response_trailer_mode) == (
        HEADER_MODE.SEND,
        HEADER_MODE.SKIP,
    )
    assert oracle.override_message_timeout == datetime.timedelta(milliseconds=1500)
    assert ep.ProcessingResponse.FromString(bytes(oracle)) == ours


@pytest.mark.parametrize("member", ["request_trailers", "response_trailers"])
def test_trailers_response_reaches_envoy_schema_intact(member: str) -> None:
    """A trailers answer's header mutation reaches Envoy in the right oneof member."""
    ours = ep.ProcessingResponse()
    getattr(ours, member).header_mutation.CopyFrom(_mutation())
    oracle = oracle_ep.ProcessingResponse.parse(ours.SerializeToString())
    assert oracle.immediate_response is None
    _check_oracle_mutation(getattr(oracle, member).header_mutation)


def test_clear_body_is_envoys_oneof_member_2() -> None:
    """clear_body lands in BodyMutation.clear_body, not in body."""
    ours = ep.BodyMutation(clear_body=True)
    oracle = oracle_ep.BodyMutation.parse(ours.SerializeToString())
    assert (oracle.clear_body, oracle.body, oracle.streamed_response) == (True, None, None)


def test_immediate_response_reaches_envoy_schema_intact() -> None:
    """An immediate reply with status, headers, body, gRPC status and details reaches Envoy."""
    ours = ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden),
            headers=_mutation(),
            body=b"denied\xff",
            grpc_status=ep.GrpcStatus(status=7),
            details="guardrail_masking_failed",
        )
    )
    oracle = oracle_ep.ProcessingResponse.parse(ours.SerializeToString())
    reply = oracle.immediate_response
    assert reply is not None
    assert reply.status is not None
    assert reply.grpc_status is not None
    assert reply.status.code == oracle_type.StatusCode.Forbidden
    _check_oracle_mutation(reply.headers)
    assert (reply.body, reply.grpc_status.status, reply.details) == (
        b"denied\xff",
        7,
        "guardrail_masking_failed",
    )


@pytest.mark.parametrize(
    ("ours", "oracle"),
    [
        (processing_mode_pb2.ProcessingMode.HeaderSendMode, HEADER_MODE),
        (processing_mode_pb2.ProcessingMode.BodySendMode, BODY_MODE),
        (ep.CommonResponse.ResponseStatus, oracle_ep.CommonResponseResponseStatus),
    ],
    ids=["header-mode", "body-mode", "response-status"],
)
def test_enums_match_envoys(ours: Any, oracle: Any) -> None:
    """Every enum value we declare has Envoy's name and number (and none is missing)."""
    assert dict(ours.items()) == {member.name: member.value for member in oracle}
