"""Turn a policy's `openapi:` reference into routes: one per operation of the document."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.openapi import ImportedOperation, parse_openapi
from guardrail_authz.policy.source import (
    ApiKeySet,
    BodySpec,
    Match,
    OnAllow,
    OpenApiSpec,
    Policy,
    Route,
    SchemaSpec,
    Where,
)
from guardrail_authz.policy.yamlsrc import read_text

DEFAULT_BODY = BodySpec((), 1_048_576, 64, 100_000, "deny", Where("", 0, ""))


def import_openapi(
    doc: Policy | ApiKeySet, directory: Path, digest: Any, watched: list[Path], sink: ErrorSink
) -> Policy | ApiKeySet:
    """A policy with `openapi:` gains the document's operations as routes (after its own)."""
    if not isinstance(doc, Policy) or doc.openapi is None:
        return doc
    spec = doc.openapi
    path = directory / spec.file  # an absolute path stays absolute
    w = spec.where
    name = spec.file
    if not path.is_file():
        msg = f"OpenAPI document {name!r} not found in the policy directory"
        sink.add("openapi.file", msg, w.file, w.line, w.field)
        return doc
    text = read_text(path, name, sink)
    if text is None:
        return doc  # reported by read_text
    digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    watched.append(path)
    routes = tuple(_route(op, spec, name) for op in parse_openapi(text, name, sink))
    return replace(doc, routes=doc.routes + routes)


def _route(op: ImportedOperation, spec: OpenApiSpec, file: str) -> Route:
    where = Where(file, op.line, f"paths.{op.path}.{op.method.lower()}")
    match = Match(None, None, (op.method,), (op.path,), (), where)
    schema = None
    if op.body_schema or op.query_schema or op.header_schema or op.path_schema:
        schema = SchemaSpec(
            op.body_schema, op.query_schema, op.header_schema, spec.strict, where,
            not op.body_required, op.path_schema,
        )  # fmt: skip
    body = spec.body
    if op.content_types and (body is None or not body.content_types):
        body = replace(body or DEFAULT_BODY, content_types=op.content_types)
    return Route(
        op.name, op.action, match, spec.rules, OnAllow(), where, (), body, schema, None, None
    )
