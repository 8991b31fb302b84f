"""Decision → Envoy CheckResponse: the one table of outcomes to gRPC codes and HTTP statuses."""

from __future__ import annotations

from guardrail_authz.engine.decision import Decision
from guardrail_authz.wire.envoy.config.core.v3.base_pb2 import HeaderValueOption
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse

# google.rpc.Code values carried in CheckResponse.status.
GRPC_OK = 0
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNAUTHENTICATED = 16
GRPC_INVALID_ARGUMENT = 3
GRPC_INTERNAL = 13

_APPEND = {
    "overwrite": HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    "if_absent": HeaderValueOption.ADD_IF_ABSENT,
}


def _header(opt: HeaderValueOption, name: str, value: str, mode: str) -> None:
    opt.header.key = name
    opt.header.value = value
    if mode == "append":
        # Measured against Envoy 1.40 (tests/test_e2e_envoy.py): ext_authz overwrites on
        # append_action=APPEND_IF_EXISTS_OR_ADD but appends on the deprecated `append: true`.
        opt.append.value = True
    else:
        opt.append_action = _APPEND[mode]


def grpc_code(status: int) -> int:
    """The google.rpc code Envoy sees for a denial with this HTTP status."""
    if status == 401:
        return GRPC_UNAUTHENTICATED
    if status == 429:
        return GRPC_RESOURCE_EXHAUSTED
    if status in (400, 413, 414, 415):
        return GRPC_INVALID_ARGUMENT
    if status >= 500:
        return GRPC_INTERNAL
    return GRPC_PERMISSION_DENIED


METADATA_DECISION_ID = "decision_id"  # in Envoy's envoy.filters.http.ext_authz namespace


def to_check_response(d: Decision) -> CheckResponse:
    """Render a decision; allow carries mutations, deny carries status, headers and JSON body.
    Both carry the decision id as dynamic metadata, for Envoy's access log."""
    resp = CheckResponse()
    resp.dynamic_metadata.fields[METADATA_DECISION_ID].string_value = d.decision_id
    if d.allowed:
        resp.status.code = GRPC_OK
        ok = resp.ok_response
        for name, value, mode in d.upstream_headers_set:
            _header(ok.headers.add(), name, value, mode)
        ok.headers_to_remove.extend(d.upstream_headers_remove)
        for name, value, mode in d.response_headers_add:
            _header(ok.response_headers_to_add.add(), name, value, mode)
        for name, value in d.query_set:
            q = ok.query_parameters_to_set.add()
            q.key = name
            q.value = value
        ok.query_parameters_to_remove.extend(d.query_remove)
        return resp
    resp.status.code = grpc_code(d.status)
    resp.status.message = d.reason
    denied = resp.denied_response
    denied.status.code = d.status  # type: ignore[assignment]  # any HTTP status is allowed
    for name, value in d.deny_headers:
        _header(denied.headers.add(), name, value, "overwrite")
    denied.body = d.body
    return resp
