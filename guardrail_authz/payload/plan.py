"""A route's compiled payload guardrails and their check: body, schemas, detectors, actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guardrail_authz.engine.request import BadRequestError, RequestView
from guardrail_authz.payload.actions import (
    ActionError,
    GraphQLLimits,
    graphql_request,
    grpc_actions,
    jsonrpc_actions,
    sql_actions,
)
from guardrail_authz.payload.body import BodyLimits, ParsedBody, inspectable, parse_body
from guardrail_authz.payload.detect import Hit, Inspector
from guardrail_authz.payload.schema import CompiledSchema, Violation, coerce
from guardrail_authz.policy.matchers import GlobSet

PARTIAL_HEADER = "x-envoy-auth-partial-body"


@dataclass(frozen=True, slots=True)
class FieldOverride:
    """Detectors skipped or only monitored on the fields a glob matches."""

    fields: GlobSet
    block: Inspector | None  # the detectors that still block there (None: none)
    watch: Inspector | None  # the detectors that only record there


@dataclass(frozen=True, slots=True)
class ActionsPlan:
    """The extractor of a route and its settings."""

    kind: str  # graphql | jsonrpc | grpc | sql
    field: tuple[str, ...]  # sql: the body field's dotted path, split
    dialect: str | None
    graphql: GraphQLLimits


@dataclass(frozen=True, slots=True)
class SchemaPlan:
    """A compiled schema and, for query and headers, the source used to type the strings."""

    compiled: CompiledSchema
    source: Mapping[str, Any]
    # headers: the names the schema lists; path: the parameter name of each template
    # segment ("" for a literal one)
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PayloadPlan:
    """Everything a route checks in a request beyond who calls it; built at load time."""

    needs_body: bool
    limits: BodyLimits
    partial_inspect: bool
    body_schema: CompiledSchema | None = None
    body_optional: bool = False
    query_schema: SchemaPlan | None = None
    header_schema: SchemaPlan | None = None
    path_schema: SchemaPlan | None = None
    block: Inspector | None = None  # detectors that deny
    watch: Inspector | None = None  # detectors in monitor mode
    inspect_headers: tuple[str, ...] = ()
    inspect_path: bool = True
    inspect_query: bool = True
    overrides: tuple[FieldOverride, ...] = ()
    actions: ActionsPlan | None = None


@dataclass(slots=True)
class PayloadResult:
    """What the payload check found: the request's actions and monitor-mode findings."""

    actions: tuple[str, ...] = ()
    monitored: list[Hit] = field(default_factory=list)


class PayloadDeniedError(BadRequestError):
    """A payload guardrail refused the request; `detail` goes into the JSON deny body."""

    def __init__(self, status: int, reason: str, message: str, detail: dict[str, str]) -> None:
        super().__init__(status, reason, message)
        self.detail = detail


def check_payload(plan: PayloadPlan, view: RequestView) -> PayloadResult:
    """Run a route's payload guardrails; raises BadRequestError (or PayloadDeniedError) to deny."""
    body: ParsedBody | None = None
    partial_text: str | None = None
    inspects = plan.block is not None or plan.watch is not None
    found: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
    if plan.needs_body:
        body, partial_text = _read_body(plan, view, walk=inspects)
    if body is not None and inspects:
        found = inspectable(body, plan.limits)  # also bounds the JSON document's shape
    if body is not None and not (plan.body_optional and body.kind == "empty"):
        _check_schema(plan.body_schema, body)
    if plan.query_schema is not None:
        _violate(
            plan.query_schema.compiled.check(coerce(view.query_lists(), plan.query_schema.source))
        )
    if plan.path_schema is not None:
        ps = plan.path_schema
        params = {n: [seg] for n, seg in zip(ps.names, view.segments, strict=False) if n}
        _violate(ps.compiled.check(coerce(params, ps.source)))
    if plan.header_schema is not None:
        hs = plan.header_schema
        present = {n: [view.headers[n]] for n in hs.names if n in view.headers}
        _violate(hs.compiled.check(coerce(present, hs.source)))
    result = PayloadResult()
    if inspects:
        _inspect(plan, view, body, found, partial_text, result)
    if plan.actions is not None:
        result.actions = _actions(plan.actions, view, body)
    return result


def _read_body(
    plan: PayloadPlan, view: RequestView, *, walk: bool
) -> tuple[ParsedBody | None, str | None]:
    limit = plan.limits.max_bytes
    declared = view.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequestError(413, "body_too_large", f"the body is over {limit} bytes")
    if view.headers.get(PARTIAL_HEADER) == "true":
        if not plan.partial_inspect:
            msg = "the body is larger than the proxy buffers for inspection"
            raise BadRequestError(413, "body_too_large", msg)
        # Inspect what arrived as text: a truncated document cannot be parsed or validated.
        return None, view.body[:limit].decode("utf-8", "replace")
    content_type = view.headers.get("content-type")
    return parse_body(view.body, content_type, plan.limits, walk=walk), None


def _check_schema(schema: CompiledSchema | None, body: ParsedBody) -> None:
    if schema is None:
        return
    if body.kind != "json":
        detail = {"field": "body", "rule": "type"}
        raise PayloadDeniedError(400, "schema_violation", "body: must be a JSON document", detail)
    _violate(schema.check(body.json))


def _violate(violation: Violation | None) -> None:
    if violation is not None:
        detail = {"field": violation.field, "rule": violation.rule}
        raise PayloadDeniedError(400, "schema_violation", violation.message, detail)


def _inspect(
    plan: PayloadPlan,
    view: RequestView,
    body: ParsedBody | None,
    found: tuple[list[tuple[str, str]], list[tuple[str, str]]],
    partial_text: str | None,
    result: PayloadResult,
) -> None:
    values, names = found  # the body's strings and keys
    if partial_text is not None:
        values.append(("body", partial_text))
    if plan.inspect_query:
        for name, items in view.query_lists().items():
            names.append(("query", name))
            values.extend((f"query.{name}", v) for v in items)
    if plan.inspect_path:
        values.extend((f"path[{i}]", seg) for i, seg in enumerate(view.segments))
    for header in plan.inspect_headers:
        value = view.headers.get(header)
        if value is not None:
            values.append((f"header.{header}", value))
    blocked: list[Hit] = []
    watched = result.monitored
    groups = _group(plan, values) if plan.overrides else [(plan.block, plan.watch, values)]
    for block, watch, group in groups:
        if block is not None and group:
            blocked.extend(block.scan(group))
        if watch is not None and group:
            watched.extend(watch.scan(group))
    if names:
        if plan.block is not None:
            blocked.extend(plan.block.scan_keys(names))
        if plan.watch is not None:
            watched.extend(plan.watch.scan_keys(names))
    if body is not None and body.kind == "binary":
        if plan.block is not None:
            blocked.extend(plan.block.scan_raw("body", body.raw))
        if plan.watch is not None:
            watched.extend(plan.watch.scan_raw("body", body.raw))
    if blocked:
        hit = blocked[0]
        detail = {"detector": hit.detector, "field": hit.field, "signature": hit.signature}
        msg = f"{hit.detector} detected in {hit.field}"
        raise PayloadDeniedError(403, f"{hit.detector}_detected", msg, detail)


def _group(
    plan: PayloadPlan, values: list[tuple[str, str]]
) -> list[tuple[Inspector | None, Inspector | None, list[tuple[str, str]]]]:
    """Values split by the field override that applies (the first whose glob matches)."""
    default: list[tuple[str, str]] = []
    by_override: list[list[tuple[str, str]]] = [[] for _ in plan.overrides]
    for item in values:
        for i, override in enumerate(plan.overrides):
            if override.fields.matches(item[0]):
                by_override[i].append(item)
                break
        else:
            default.append(item)
    out = [(plan.block, plan.watch, default)]
    out += [(o.block, o.watch, items) for o, items in zip(plan.overrides, by_override, strict=True)]
    return out


def _actions(plan: ActionsPlan, view: RequestView, body: ParsedBody | None) -> tuple[str, ...]:
    try:
        if plan.kind == "grpc":
            return grpc_actions(view.raw_path.split("?", 1)[0])
        data: object = None
        if body is not None and body.kind == "json":
            data = body.json
        elif body is not None and body.media_type == "application/graphql":
            data = body.text  # a GraphQL document sent as it is
        if plan.kind == "graphql":
            query = {k: v[0] for k, v in view.query_lists().items() if v}
            return graphql_request(view.method, query, data, plan.graphql)
        if plan.kind == "jsonrpc":
            return jsonrpc_actions(data)
        return sql_actions(_statement(data, plan.field), plan.dialect)
    except ActionError as err:
        raise BadRequestError(400, err.reason, err.message) from None


def _statement(data: object, path: tuple[str, ...]) -> str:
    statement = _dig(data, path)
    if not isinstance(statement, str):
        dotted = ".".join(path)
        raise ActionError("sql_invalid", f"body.{dotted}: a SQL statement (string) is required")
    return statement


def _dig(data: object, path: tuple[str, ...]) -> object:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
