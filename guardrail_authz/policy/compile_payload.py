"""Compile a route's payload sections (body, schema, inspect, actions) into a PayloadPlan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from guardrail_authz.payload.actions import GraphQLLimits
from guardrail_authz.payload.body import BodyLimits
from guardrail_authz.payload.detect import Inspector, inspector
from guardrail_authz.payload.plan import ActionsPlan, FieldOverride, PayloadPlan, SchemaPlan
from guardrail_authz.payload.schema import CompiledSchema, SchemaError, compile_schema
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.matchers import GlobSet
from guardrail_authz.policy.parse_payload import DEFAULT_MAX_BYTES
from guardrail_authz.policy.source import InspectSpec, Policy, Route, Where

_BODY_ACTIONS = ("graphql", "jsonrpc", "sql")


def compile_payload(policy: Policy, route: Route, sink: ErrorSink) -> PayloadPlan | None:
    """The route's plan, or None when it checks nothing in the payload."""
    inspect = route.inspect if route.inspect is not None else policy.inspect
    if inspect is not None and not inspect.detectors:
        inspect = None  # detectors: none
    schema, actions = route.schema, route.actions
    _check_rule_actions(route, sink)
    if route.body is None and schema is None and inspect is None and actions is None:
        return None
    b = route.body
    limits = (
        BodyLimits(b.max_bytes, b.max_depth, b.max_elements, b.content_types)
        if b is not None
        else BodyLimits(DEFAULT_MAX_BYTES)
    )
    needs_body = (
        b is not None
        or (schema is not None and schema.body is not None)
        or inspect is not None
        or (actions is not None and actions.kind in _BODY_ACTIONS)
    )
    plan = PayloadPlan(needs_body, limits, b is not None and b.partial == "inspect")
    fields: dict[str, Any] = {}
    if schema is not None:
        w, strict = schema.where, schema.strict
        fields["body_schema"] = _schema(schema.body, "body", strict, w, "body", sink)
        fields["body_optional"] = schema.body_optional
        fields["query_schema"] = _schema_plan(schema.query, "query", strict, w, sink)
        fields["header_schema"] = _schema_plan(schema.headers, "header", strict, w, sink)
        params = _schema_plan(schema.path, "path", strict, w, sink)
        if params is not None:
            fields["path_schema"] = _path_positions(params, route, sink)
    if inspect is not None:
        fields.update(_inspection(inspect, sink))
    if actions is not None:
        limits_gql = GraphQLLimits(actions.max_depth, actions.max_aliases, actions.max_fields)
        path = tuple(actions.field.split(".")) if actions.field else ()
        fields["actions"] = ActionsPlan(actions.kind, path, actions.dialect, limits_gql)
    return replace(plan, **fields)


def _path_positions(plan: SchemaPlan, route: Route, sink: ErrorSink) -> SchemaPlan | None:
    """The path schema with, as names, the parameter of each segment ("" for literals):
    the route must have exactly one path template, whose {names} the schema types."""
    m, w = route.match, route.schema.where if route.schema else route.where
    if len(m.paths) != 1 or m.prefixes:
        msg = "schema.path needs a route with exactly one path template (no prefixes)"
        sink.add("schema.path", msg, w.file, w.line, w.field + ".path")
        return None
    segments = [part for part in m.paths[0].split("/") if part]
    names = tuple(
        part[1:-1] if part.startswith("{") and part.endswith("}") else "" for part in segments
    )
    unknown = sorted(set(plan.names) - set(names))
    if unknown:
        msg = f"schema.path names {', '.join(unknown)}, not parameters of {m.paths[0]!r}"
        sink.add("schema.path", msg, w.file, w.line, w.field + ".path")
        return None
    return replace(plan, names=names)


def _check_rule_actions(route: Route, sink: ErrorSink) -> None:
    if route.actions is not None:
        return
    for rule in route.rules:
        if rule.when.actions:
            w = rule.where
            msg = "this rule matches actions, but the route has no 'actions' extractor"
            sink.add("rule.actions", msg, w.file, w.line, w.field + ".when.actions")


def _schema(
    source: Mapping[str, Any] | None, base: str, strict: bool, w: Where, key: str, sink: ErrorSink
) -> CompiledSchema | None:
    if source is None:
        return None
    try:
        return compile_schema(source, base=base, strict=strict)
    except SchemaError as exc:
        sink.add("schema.invalid", str(exc), w.file, w.line, f"{w.field}.{key}")
        return None


def _schema_plan(
    source: Mapping[str, Any] | None, base: str, strict: bool, w: Where, sink: ErrorSink
) -> SchemaPlan | None:
    key = "headers" if base == "header" else base
    compiled = _schema(source, base, strict, w, key, sink)
    if compiled is None or source is None:
        return None
    props = source.get("properties")
    names = tuple(props) if isinstance(props, dict) else ()
    return SchemaPlan(compiled, source, names)


def _inspection(spec: InspectSpec, sink: ErrorSink) -> dict[str, Any]:
    watch_names = frozenset(spec.monitor)
    block_names = frozenset(spec.detectors) - watch_names
    overrides: list[FieldOverride] = []
    for rule in spec.fields:
        skip = frozenset(rule.skip)
        watch = (watch_names | frozenset(rule.monitor)) - skip
        block = block_names - skip - watch
        overrides.append(FieldOverride(GlobSet.build([rule.path]), _insp(block), _insp(watch)))
    for name in spec.headers:
        if name.startswith(":") or not name:
            w = spec.where
            sink.add("inspect.header", f"{name!r} is not a header name", w.file, w.line, w.field)
    return {
        "block": _insp(block_names),
        "watch": _insp(watch_names),
        "inspect_headers": spec.headers,
        "inspect_path": spec.path,
        "inspect_query": spec.query,
        "overrides": tuple(overrides),
    }


def _insp(names: frozenset[str]) -> Inspector | None:
    return inspector(names) if names else None
