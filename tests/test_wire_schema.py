"""Our minimal Envoy protos' schema (fields, enums, service) against envoy_data_plane's."""

import dataclasses
import warnings
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pb2 import FieldDescriptorProto
from google.rpc import status_pb2
from pydantic.warnings import PydanticDeprecatedSince212

from guardrail_authz.wire.envoy.config.core.v3 import address_pb2, base_pb2
from guardrail_authz.wire.envoy.service.auth.v3 import (
    attribute_context_pb2,
    external_auth_pb2,
    external_auth_pb2_grpc,
)
from guardrail_authz.wire.envoy.type.v3 import http_status_pb2

with warnings.catch_warnings():
    # envoy_data_plane's models use a pydantic validator style deprecated in 2.12; the suite
    # turns warnings into errors, so the oracle is imported once with that warning muted.
    warnings.simplefilter("ignore", PydanticDeprecatedSince212)
    from envoy_data_plane.envoy.config.core import v3 as oracle_core
    from envoy_data_plane.envoy.service.auth import v3 as oracle_auth
    from envoy_data_plane.envoy.type import v3 as oracle_type
    from envoy_data_plane.message_pool import default_message_pool

CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"
OUR_FILES = (
    address_pb2.DESCRIPTOR,
    base_pb2.DESCRIPTOR,
    http_status_pb2.DESCRIPTOR,
    attribute_context_pb2.DESCRIPTOR,
    external_auth_pb2.DESCRIPTOR,
)
ORACLE_MODULES = {
    "envoy.config.core.v3": oracle_core,
    "envoy.service.auth.v3": oracle_auth,
    "envoy.type.v3": oracle_type,
}


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    """The synthetic entry message of a map field, None for any other field."""
    entry = field.message_type
    return entry if entry is not None and entry.GetOptions().map_entry else None


def _all_messages(descriptor: Descriptor) -> list[Descriptor]:
    """descriptor and its nested message types, map entries excluded."""
    nested = [d for d in descriptor.nested_types if not d.GetOptions().map_entry]
    return [descriptor, *(m for d in nested for m in _all_messages(d))]


def _all_enums(descriptor: Descriptor) -> list[EnumDescriptor]:
    """The enums declared in descriptor and its nested messages."""
    return [e for m in _all_messages(descriptor) for e in m.enum_types]


def _proto_type(field: FieldDescriptor) -> str:
    """The field's type in betterproto2's spelling: "string", "message", "map<string,message>"."""
    entry = _map_entry(field)
    if entry is not None:
        key, value = (_proto_type(entry.fields_by_name[name]) for name in ("key", "value"))
        return f"map<{key},{value}>"
    name = FieldDescriptorProto.Type.Name(FieldDescriptorProto.Type.ValueType(field.type))
    return name.removeprefix("TYPE_").lower()


def _oracle_signature(meta: Any) -> tuple[int, str, bool] | None:
    """(number, type, repeated) of an oracle field, spelled as _proto_type spells ours."""
    if meta is None:
        return None
    kind = meta.proto_type
    if meta.map_meta is not None:
        kind = f"map<{meta.map_meta[0].proto_type},{meta.map_meta[1].proto_type}>"
    return meta.number, kind, bool(meta.repeated)


def _oracle_fields(full_name: str) -> dict[str, Any]:
    """betterproto2 field metadata of the oracle message called full_name, by field name."""
    oracle_class: Any = default_message_pool.url_to_type[f"type.googleapis.com/{full_name}"]
    return {
        field.name: field.metadata["betterproto"]
        for field in dataclasses.fields(oracle_class)
        if "betterproto" in field.metadata
    }


def test_every_field_has_envoys_number_and_type() -> None:
    """Each field we declare exists in Envoy's message of the same name, same number and type."""
    problems: list[str] = []
    for file in OUR_FILES:
        for top in file.message_types_by_name.values():
            for message in _all_messages(top):
                oracle = _oracle_fields(message.full_name)
                for field in message.fields:
                    meta = oracle.get(field.name)
                    kind = _proto_type(field)
                    ours = (field.number, kind, field.is_repeated and not kind.startswith("map"))
                    theirs = _oracle_signature(meta)
                    if ours != theirs:
                        problems.append(f"{message.full_name}.{field.name}: {ours} != {theirs}")
                    oneof = field.containing_oneof.name if field.containing_oneof else None
                    if meta and oneof != meta.group:
                        problems.append(f"{message.full_name}.{field.name}: oneof {oneof}")
    assert not problems, "\n".join(problems)


def test_every_enum_has_envoys_values() -> None:
    """Each enum we declare matches Envoy's, name for name and number for number."""
    enums = [e for f in OUR_FILES for e in f.enum_types_by_name.values()]
    enums += [e for f in OUR_FILES for m in f.message_types_by_name.values() for e in _all_enums(m)]
    assert {e.full_name for e in enums} == {
        "envoy.config.core.v3.SocketAddress.Protocol",
        "envoy.config.core.v3.HeaderValueOption.HeaderAppendAction",
        "envoy.type.v3.StatusCode",
    }
    for enum in enums:
        package = enum.file.package
        oracle_enum = getattr(
            ORACLE_MODULES[package], enum.full_name[len(package) + 1 :].replace(".", "")
        )
        ours = {value.name: value.number for value in enum.values}
        assert ours == {member.name: member.value for member in oracle_enum}, enum.full_name


def test_service_is_envoys_authorization_check() -> None:
    """The service's full name gives Envoy's gRPC method path."""
    service = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"]
    method = service.methods_by_name["Check"]
    assert service.full_name == "envoy.service.auth.v3.Authorization"
    assert f"/{service.full_name}/{method.name}" == CHECK_PATH
    assert method.input_type is external_auth_pb2.CheckRequest.DESCRIPTOR
    assert method.output_type is external_auth_pb2.CheckResponse.DESCRIPTOR
    assert external_auth_pb2.CheckResponse.DESCRIPTOR.fields_by_name["status"].message_type is (
        status_pb2.Status.DESCRIPTOR
    ), "google.rpc.Status must be the one registered by googleapis-common-protos"


class _EchoAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """Answers every Check with the request's path in the status message."""

    def Check(  # noqa: N802 - gRPC method name
        self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        """Echo the request path."""
        path = request.attributes.request.http.path
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(message=path))


def test_generated_servicer_answers_on_envoys_method_path() -> None:
    """A raw call to Envoy's literal method path reaches the generated servicer."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(_EchoAuthorization(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                CHECK_PATH,
                request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
                response_deserializer=external_auth_pb2.CheckResponse.FromString,
            )
            request = external_auth_pb2.CheckRequest()
            request.attributes.request.http.path = "/ping"
            response = call(request, timeout=10)
    finally:
        server.stop(grace=None)
    assert response.status.message == "/ping"
