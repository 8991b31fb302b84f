"""Fully populated messages cross between envoy_data_plane (full Envoy schema) and ours."""

import datetime
import warnings
from typing import Any

import pytest
from google.protobuf import struct_pb2, unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from pydantic.warnings import PydanticDeprecatedSince212

from guardrail_authz.wire.envoy.config.core.v3 import address_pb2, base_pb2
from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2
from guardrail_authz.wire.envoy.type.v3 import http_status_pb2

with warnings.catch_warnings():
    # envoy_data_plane's models use a pydantic validator style deprecated in 2.12; the suite
    # turns warnings into errors, so the oracle is imported once with that warning muted.
    warnings.simplefilter("ignore", PydanticDeprecatedSince212)
    from envoy_data_plane.envoy.config.core import v3 as oracle_core
    from envoy_data_plane.envoy.service.auth import v3 as oracle_auth
    from envoy_data_plane.envoy.type import v3 as oracle_type
    from envoy_data_plane.google import protobuf as oracle_pb
    from envoy_data_plane.google import rpc as oracle_rpc

REQUEST_TIME = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
HVO = base_pb2.HeaderValueOption


def _unknown_field_paths(message: Message, path: str = "") -> list[str]:
    """Every unknown field in message, recursively: a wrong field number lands here."""
    here = path or message.DESCRIPTOR.full_name
    unknown = unknown_fields.UnknownFieldSet(message)
    found = [f"{here}#{unknown[index].field_number}" for index in range(len(unknown))]
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            is_message = entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
            children = [(f"[{key!r}]", item) for key, item in value.items()] if is_message else []
        elif field.is_repeated:
            children = [(f"[{index}]", item) for index, item in enumerate(value)]
        else:
            children = [("", value)]
        for suffix, child in children:
            found += _unknown_field_paths(child, f"{here}.{field.name}{suffix}")
    return found


def _oracle_peer(ip: str, port: int, name: str) -> Any:
    """A fully populated Peer built with the oracle."""
    return oracle_auth.AttributeContextPeer(
        address=oracle_core.Address(
            socket_address=oracle_core.SocketAddress(
                protocol=oracle_core.SocketAddressProtocol.UDP,
                address=ip,
                port_value=port,
                resolver_name="envoy.resolvers.test",
                ipv4_compat=True,
                network_namespace_filepath="/var/run/netns/test",
            )
        ),
        service=f"{name}-svc",
        labels={"app": name, "version": "v2"},
        principal=f"spiffe://cluster.local/ns/default/sa/{name}",
        certificate=f"-----BEGIN%20CERTIFICATE-----%0A{name}%0A",
    )


def _oracle_metadata(namespace: str) -> Any:
    """Oracle Metadata with one Struct namespace and one typed (Any) namespace."""
    struct = oracle_pb.Struct(
        fields={
            "sub": oracle_pb.Value(string_value="alice"),
            "exp": oracle_pb.Value(number_value=1.5),
        }
    )
    packed = oracle_pb.Any(type_url="type.googleapis.com/test.Typed", value=b"\x08\x01")
    return oracle_core.Metadata(
        filter_metadata={namespace: struct}, typed_filter_metadata={namespace: packed}
    )


def _oracle_check_request() -> Any:
    """A CheckRequest with every field our schema declares set, built with the oracle."""
    http = oracle_auth.AttributeContextHttpRequest(
        id="req-0001",
        method="POST",
        headers={":authority": "api.example.com", "content-type": "application/json"},
        header_map=oracle_core.HeaderMap(
            headers=[
                oracle_core.HeaderValue(key="x-dup", raw_value=b"one"),
                oracle_core.HeaderValue(key="x-dup", raw_value=b"two\xff"),
                oracle_core.HeaderValue(key="x-text", value="plain"),
            ]
        ),
        path="/v1/orders/42?expand=items",
        host="api.example.com",
        scheme="https",
        query="expand=items",
        fragment="top",
        size=1234,
        protocol="HTTP/2",
        body='{"amount": 10}',
        raw_body=b"\x00\x01binary\xff",
    )
    return oracle_auth.CheckRequest(
        attributes=oracle_auth.AttributeContext(
            source=_oracle_peer("10.0.0.1", 51234, "client"),
            destination=_oracle_peer("10.0.0.2", 8080, "orders"),
            request=oracle_auth.AttributeContextRequest(time=REQUEST_TIME, http=http),
            context_extensions={"route": "orders", "tenant": "acme"},
            metadata_context=_oracle_metadata("envoy.filters.http.jwt_authn"),
            route_metadata_context=_oracle_metadata("guardrail"),
            tls_session=oracle_auth.AttributeContextTlsSession(sni="api.example.com"),
        )
    )


def _header(key: str, value: str, action: "HVO.HeaderAppendAction.ValueType") -> HVO:
    """A HeaderValueOption built with our classes."""
    return HVO(header=base_pb2.HeaderValue(key=key, value=value), append_action=action)


def _struct(**fields: str) -> struct_pb2.Struct:
    """A google.protobuf.Struct of string fields."""
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct


def _oracle_headers(options: Any) -> list[tuple[str, str, bytes, int, bool]]:
    """Oracle HeaderValueOptions as comparable tuples."""
    return [
        (o.header.key, o.header.value, o.header.raw_value, int(o.append_action), o.keep_empty_value)
        for o in options
    ]


# --- Envoy -> us ---------------------------------------------------------------------------


def test_full_check_request_from_envoy_schema_parses_field_for_field() -> None:
    """A fully populated oracle CheckRequest parses with our classes, nothing left unknown."""
    ours = external_auth_pb2.CheckRequest.FromString(bytes(_oracle_check_request()))
    assert _unknown_field_paths(ours) == []
    attributes = ours.attributes
    for peer, ip, port, name in (
        (attributes.source, "10.0.0.1", 51234, "client"),
        (attributes.destination, "10.0.0.2", 8080, "orders"),
    ):
        assert peer.address.WhichOneof("address") == "socket_address"
        socket = peer.address.socket_address
        assert socket.protocol == address_pb2.SocketAddress.UDP
        assert (socket.address, socket.port_value) == (ip, port)
        assert socket.WhichOneof("port_specifier") == "port_value"
        assert socket.resolver_name == "envoy.resolvers.test"
        assert socket.ipv4_compat is True
        assert socket.network_namespace_filepath == "/var/run/netns/test"
        assert peer.service == f"{name}-svc"
        assert dict(peer.labels) == {"app": name, "version": "v2"}
        assert peer.principal == f"spiffe://cluster.local/ns/default/sa/{name}"
        assert peer.certificate == f"-----BEGIN%20CERTIFICATE-----%0A{name}%0A"
    assert attributes.request.time.ToDatetime(tzinfo=datetime.UTC) == REQUEST_TIME
    http = attributes.request.http
    assert (http.id, http.method) == ("req-0001", "POST")
    assert dict(http.headers) == {
        ":authority": "api.example.com",
        "content-type": "application/json",
    }
    assert [(h.key, h.value, h.raw_value) for h in http.header_map.headers] == [
        ("x-dup", "", b"one"),
        ("x-dup", "", b"two\xff"),
        ("x-text", "plain", b""),
    ]
    assert (http.path, http.host, http.scheme) == (
        "/v1/orders/42?expand=items",
        "api.example.com",
        "https",
    )
    assert (http.query, http.fragment, http.size) == ("expand=items", "top", 1234)
    assert (http.protocol, http.body) == ("HTTP/2", '{"amount": 10}')
    assert http.raw_body == b"\x00\x01binary\xff"
    assert dict(attributes.context_extensions) == {"route": "orders", "tenant": "acme"}
    for metadata, namespace in (
        (attributes.metadata_context, "envoy.filters.http.jwt_authn"),
        (attributes.route_metadata_context, "guardrail"),
    ):
        assert dict(metadata.filter_metadata[namespace]) == {"sub": "alice", "exp": 1.5}
        packed = metadata.typed_filter_metadata[namespace]
        assert (packed.type_url, packed.value) == ("type.googleapis.com/test.Typed", b"\x08\x01")
    assert attributes.tls_session.sni == "api.example.com"


@pytest.mark.parametrize(
    ("oracle_address", "which", "expected"),
    [
        (
            oracle_core.Address(pipe=oracle_core.Pipe(path="/run/envoy.sock", mode=0o600)),
            "pipe",
            ("/run/envoy.sock", 0o600),
        ),
        (
            oracle_core.Address(
                envoy_internal_address=oracle_core.EnvoyInternalAddress(
                    server_listener_name="internal", endpoint_id="10.0.0.9:80"
                )
            ),
            "envoy_internal_address",
            ("internal", "10.0.0.9:80"),
        ),
        (
            oracle_core.Address(
                socket_address=oracle_core.SocketAddress(address="db", named_port="pg")
            ),
            "socket_address",
            ("db", "pg"),
        ),
    ],
    ids=["pipe", "internal", "named-port"],
)
def test_other_peer_address_kinds_parse(
    oracle_address: Any, which: str, expected: tuple[Any, Any]
) -> None:
    """Unix socket, internal listener and named-port peers parse into the right oneof member."""
    ours = address_pb2.Address.FromString(bytes(oracle_address))
    assert _unknown_field_paths(ours) == []
    assert ours.WhichOneof("address") == which
    if which == "pipe":
        assert (ours.pipe.path, ours.pipe.mode) == expected
    elif which == "envoy_internal_address":
        internal = ours.envoy_internal_address
        assert (internal.server_listener_name, internal.endpoint_id) == expected
    else:
        socket = ours.socket_address
        assert socket.WhichOneof("port_specifier") == "named_port"
        assert (socket.address, socket.named_port) == expected


# --- us -> Envoy ---------------------------------------------------------------------------


def test_ok_response_reaches_envoy_schema_intact() -> None:
    """An allow with every mutation we can send parses field for field with the oracle."""
    ok = external_auth_pb2.OkHttpResponse(
        headers=[
            _header("x-guardrail-decision-id", "d-42", HVO.OVERWRITE_IF_EXISTS_OR_ADD),
            _header("x-guardrail-tenant", "acme", HVO.ADD_IF_ABSENT),
            HVO(
                header=base_pb2.HeaderValue(key="x-raw", raw_value=b"\xfe\x00raw"),
                append_action=HVO.APPEND_IF_EXISTS_OR_ADD,
                keep_empty_value=True,
            ),
        ],
        headers_to_remove=["authorization", "cookie"],
        response_headers_to_add=[_header("x-guardrail-mode", "monitor", HVO.OVERWRITE_IF_EXISTS)],
        query_parameters_to_set=[base_pb2.QueryParameter(key="tenant", value="acme")],
        query_parameters_to_remove=["debug", "token"],
    )
    ours = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK, message="allowed"),
        ok_response=ok,
        dynamic_metadata=_struct(decision_id="d-42", policy_version="7"),
    )
    oracle = oracle_auth.CheckResponse.parse(ours.SerializeToString())
    assert oracle.status is not None
    assert (oracle.status.code, oracle.status.message) == (0, "allowed")
    assert oracle.denied_response is None
    assert oracle.error_response is None
    assert oracle.ok_response is not None
    assert _oracle_headers(oracle.ok_response.headers) == [
        ("x-guardrail-decision-id", "d-42", b"", 2, False),
        ("x-guardrail-tenant", "acme", b"", 1, False),
        ("x-raw", "", b"\xfe\x00raw", 0, True),
    ]
    action = oracle_core.HeaderValueOptionHeaderAppendAction
    assert oracle.ok_response.headers[0].append_action == action.OVERWRITE_IF_EXISTS_OR_ADD
    assert oracle.ok_response.headers[1].append_action == action.ADD_IF_ABSENT
    assert oracle.ok_response.headers_to_remove == ["authorization", "cookie"]
    assert _oracle_headers(oracle.ok_response.response_headers_to_add) == [
        ("x-guardrail-mode", "monitor", b"", 3, False)
    ]
    assert [(q.key, q.value) for q in oracle.ok_response.query_parameters_to_set] == [
        ("tenant", "acme")
    ]
    assert oracle.ok_response.query_parameters_to_remove == ["debug", "token"]
    assert oracle.dynamic_metadata is not None
    assert oracle.dynamic_metadata.to_dict() == {"decision_id": "d-42", "policy_version": "7"}


DENIALS = [
    (
        http_status_pb2.Unauthorized,
        code_pb2.UNAUTHENTICATED,
        "www-authenticate",
        'Bearer realm="api"',
    ),
    (http_status_pb2.Forbidden, code_pb2.PERMISSION_DENIED, "x-guardrail-reason", "rule r-7"),
    (http_status_pb2.TooManyRequests, code_pb2.RESOURCE_EXHAUSTED, "retry-after", "30"),
]


@pytest.mark.parametrize(
    ("http_code", "grpc_code", "key", "value"), DENIALS, ids=["401", "403", "429"]
)
@pytest.mark.parametrize("member", ["denied_response", "error_response"])
def test_denial_reaches_envoy_schema_intact(
    http_code: "http_status_pb2.StatusCode.ValueType",
    grpc_code: int,
    key: str,
    value: str,
    member: str,
) -> None:
    """A denial (or error response) with status, headers and body parses with the oracle."""
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=http_code),
        headers=[
            _header(key, value, HVO.OVERWRITE_IF_EXISTS_OR_ADD),
            _header("x-guardrail-decision-id", "d-43", HVO.ADD_IF_ABSENT),
        ],
        body='{"error": "denied"}',
    )
    ours = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=grpc_code, message="denied")
    )
    getattr(ours, member).CopyFrom(denied)
    oracle = oracle_auth.CheckResponse.parse(ours.SerializeToString())
    assert oracle.status is not None
    assert (oracle.status.code, oracle.status.message) == (grpc_code, "denied")
    assert oracle.ok_response is None
    response = getattr(oracle, member)
    other = "error_response" if member == "denied_response" else "denied_response"
    assert getattr(oracle, other) is None
    assert response.status.code == oracle_type.StatusCode(http_code)
    assert int(response.status.code) == http_code
    assert _oracle_headers(response.headers) == [
        (key, value, b"", 2, False),
        ("x-guardrail-decision-id", "d-43", b"", 1, False),
    ]
    assert response.body == '{"error": "denied"}'


def test_deprecated_append_flag_is_envoys_field_2() -> None:
    """The legacy BoolValue append flag lands in Envoy's HeaderValueOption.append."""
    option = HVO(header=base_pb2.HeaderValue(key="x-a", value="1"))
    option.append.value = False
    with pytest.warns(DeprecationWarning, match="append is deprecated"):
        oracle = oracle_core.HeaderValueOption.parse(option.SerializeToString())
    assert oracle.append is False
    assert oracle.header is not None
    assert oracle.header.key == "x-a"


def test_google_rpc_status_matches_envoys() -> None:
    """Our google.rpc.Status encodes as Envoy's, details included."""
    detail = oracle_pb.Any(type_url="type.googleapis.com/x.Y", value=b"\x01")
    oracle = oracle_rpc.Status(code=7, message="no", details=[detail])
    ours = status_pb2.Status.FromString(bytes(oracle))
    assert (ours.code, ours.message) == (code_pb2.PERMISSION_DENIED, "no")
    assert [(d.type_url, d.value) for d in ours.details] == [("type.googleapis.com/x.Y", b"\x01")]
