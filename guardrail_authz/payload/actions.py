"""Action extractors: name what a request does (GraphQL, JSON-RPC, gRPC, SQL) for policy globs."""

from __future__ import annotations

import re

from guardrail_authz.payload.actions_common import ActionError, unique
from guardrail_authz.payload.actions_graphql import GraphQLLimits, graphql_actions, graphql_request
from guardrail_authz.payload.actions_sql import SQL_DIALECTS, sql_actions

__all__ = [
    "SQL_DIALECTS",
    "ActionError",
    "GraphQLLimits",
    "graphql_actions",
    "graphql_request",
    "grpc_actions",
    "jsonrpc_actions",
    "sql_actions",
]

MAX_JSONRPC_BATCH = 100
MAX_METHOD_LENGTH = 256
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_GRPC_PATH = re.compile(rf"/((?:{_IDENT}\.)*{_IDENT})/({_IDENT})")


def jsonrpc_actions(body: object) -> tuple[str, ...]:
    """jsonrpc:<method> for a JSON-RPC 2.0 call or each call of a batch (parsed JSON)."""
    if isinstance(body, list):
        if not body:
            raise ActionError("jsonrpc_invalid", "empty JSON-RPC batch")
        if len(body) > MAX_JSONRPC_BATCH:
            raise ActionError("jsonrpc_batch_too_large", "JSON-RPC batch has too many calls")
        return unique(_jsonrpc_call(call) for call in body)
    return (_jsonrpc_call(body),)


def _jsonrpc_call(call: object) -> str:
    if not isinstance(call, dict) or call.get("jsonrpc") != "2.0":
        raise ActionError("jsonrpc_invalid", 'a JSON-RPC call is an object with "jsonrpc": "2.0"')
    method = call.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_LENGTH:
        raise ActionError("jsonrpc_invalid", "JSON-RPC method must be a non-empty short string")
    if _CONTROL.search(method):
        raise ActionError("jsonrpc_invalid", "JSON-RPC method holds control or surrogate codes")
    if "params" in call and not isinstance(call["params"], list | dict):
        raise ActionError("jsonrpc_invalid", "JSON-RPC params must be an array or an object")
    if "id" in call:
        request_id = call["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
            raise ActionError("jsonrpc_invalid", "JSON-RPC id must be a string, number or null")
    return f"jsonrpc:{method}"


def grpc_actions(path: str) -> tuple[str, ...]:
    """grpc:<package.Service>/<Method> from a gRPC or gRPC-Web request path."""
    match = _GRPC_PATH.fullmatch(path) if isinstance(path, str) and len(path) <= 1024 else None
    if match is None:
        raise ActionError("grpc_bad_path", "not a gRPC path (/package.Service/Method)")
    return (f"grpc:{match.group(1)}/{match.group(2)}",)
