"""Parse the payload sections of a route: body limits, schemas, detectors and actions."""

from __future__ import annotations

import re
from typing import Any

from guardrail_authz.payload.detect import DETECTORS
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.source import ActionsSpec, BodySpec, FieldRule, InspectSpec, SchemaSpec
from guardrail_authz.policy.yamlsrc import YList, YMap

ACTION_KINDS = ("graphql", "jsonrpc", "grpc", "sql")
DEFAULT_MAX_BYTES = 1_048_576
_MEDIA = re.compile(r"^[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)$")
_FIELD = re.compile(r"^[A-Za-z0-9_.-]+$")


def body_spec(r: Reader) -> BodySpec:
    """`body:` content types, size and JSON shape limits, and what a partial body means."""
    r.only("contentTypes", "maxBytes", "maxDepth", "maxElements", "partial")
    types = r.text_list("contentTypes", lower=True)
    for t in types:
        if not _MEDIA.match(t):
            r.error("contentTypes", "body.content_type", f"{t!r} is not a media type like a/b")
    return BodySpec(
        tuple(t for t in types if _MEDIA.match(t)),
        r.integer("maxBytes", lo=1, hi=64 * 1024 * 1024) or DEFAULT_MAX_BYTES,
        r.integer("maxDepth", lo=1, hi=256) or 64,
        r.integer("maxElements", lo=1, hi=10_000_000) or 100_000,
        r.choice("partial", ("deny", "inspect"), "deny"),
        r.where(),
    )


def schema_spec(r: Reader) -> SchemaSpec:
    """`schema:` JSON Schemas for body, query and headers, and the strict switch."""
    r.only("body", "query", "headers", "path", "strict")
    parts = {key: _schema(r, key) for key in ("body", "query", "headers", "path")}
    if not any(parts.values()) and r.ok:
        r.error(None, "schema.empty", "give at least one of 'body', 'query', 'headers' or 'path'")
    headers = parts["headers"]
    if headers is not None:
        props = headers.get("properties")
        names = props if isinstance(props, dict) else {}
        if any(name != name.lower() for name in names):
            r.error("headers", "schema.header", "header names in the schema must be lower-case")
    strict = bool(r.flag("strict", default=False))
    where = r.where()
    return SchemaSpec(parts["body"], parts["query"], headers, strict, where, path=parts["path"])


def _schema(r: Reader, key: str) -> dict[str, Any] | None:
    value = r.data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        r.error(key, "field.type", "must be a JSON Schema (a mapping)")
        return None
    plain = to_plain(value)
    return plain if isinstance(plain, dict) else None


def to_plain(value: Any) -> Any:
    """YAML containers (with line numbers) as plain dicts and lists, for the validator."""
    if isinstance(value, YMap | dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, YList | list):
        return [to_plain(v) for v in value]
    return value


def inspect_spec(r: Reader) -> InspectSpec:
    """`inspect:` detectors (all, none or a list), their mode, parts and per-field overrides."""
    r.only("detectors", "mode", "monitor", "headers", "path", "query", "fields")
    detectors = _detectors(r, "detectors", default=DETECTORS)
    mode = r.choice("mode", ("block", "monitor"), "block")
    monitor = detectors if mode == "monitor" else _detectors(r, "monitor", default=())
    for name in monitor:
        if name not in detectors:
            r.error("monitor", "inspect.monitor", f"{name!r} is not among the route's detectors")
    headers = r.text_list("headers", lower=True)
    fields: list[FieldRule] = []
    for item, path, line in r.items("fields"):
        f = r.sub(item, path, line)
        if not f.ok:
            continue
        f.only("path", "skip", "monitor")
        glob = f.text("path", required=True) or ""
        skip = _detectors(f, "skip", default=())
        watch = _detectors(f, "monitor", default=())
        if not skip and not watch and f.ok:
            f.error(None, "inspect.field", "give 'skip' or 'monitor' (detector names or all)")
        fields.append(FieldRule(glob, skip, watch, f.where()))
    return InspectSpec(
        detectors,
        monitor,
        headers,
        bool(r.flag("path", default=True)),
        bool(r.flag("query", default=True)),
        tuple(fields),
        r.where(),
    )


def _detectors(r: Reader, key: str, *, default: tuple[str, ...]) -> tuple[str, ...]:
    value = r.data.get(key)
    if value is None:
        return default
    if value == "all":
        return DETECTORS
    if value == "none":
        return ()
    names = r.text_list(key)
    if not isinstance(value, list):
        return default  # reported by text_list
    for name in names:
        if name not in DETECTORS:
            known = ", ".join(DETECTORS)
            r.error(key, "inspect.detector", f"unknown detector {name!r} (known: {known}, all)")
    return tuple(n for n in DETECTORS if n in names)


def actions_spec(r: Reader) -> ActionsSpec:
    """`actions:` the extractor that names what a request does (GraphQL, JSON-RPC, gRPC, SQL)."""
    r.only("from", "field", "dialect", "maxDepth", "maxAliases", "maxFields")
    kind = r.choice("from", ACTION_KINDS, "graphql")
    if "from" not in r.data and r.ok:
        kinds = ", ".join(ACTION_KINDS)
        r.error(None, "field.required", f"missing required field 'from' ({kinds})")
    field = r.text("field")
    if kind == "sql" and field is None and r.ok:
        r.error(None, "actions.field", "sql needs 'field': the body field holding the statement")
    if field is not None and not _FIELD.match(field):
        r.error("field", "actions.field", f"{field!r}: use a dotted field name like query or q.sql")
    if field is not None and kind != "sql":
        r.error("field", "actions.field", "'field' applies to sql only")
    dialect = r.text("dialect")
    if dialect is not None and kind != "sql":
        r.error("dialect", "actions.dialect", "'dialect' applies to sql only")
    if dialect is not None:
        from sqlglot.dialects.dialect import Dialect  # noqa: PLC0415 - only policies that name one

        try:
            Dialect.get_or_raise(dialect)
        except ValueError:
            r.error("dialect", "actions.dialect", f"unknown SQL dialect {dialect!r}")
    limits = [r.integer(k, lo=1, hi=100_000) for k in ("maxDepth", "maxAliases", "maxFields")]
    if kind != "graphql" and any(v is not None for v in limits):
        r.error(None, "actions.limits", "maxDepth, maxAliases and maxFields apply to graphql only")
    depth, aliases, fields = limits
    return ActionsSpec(kind, field, dialect, depth or 10, aliases or 30, fields or 500, r.where())
