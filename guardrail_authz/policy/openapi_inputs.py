"""An operation's inputs: its parameters by name and location, and its request body."""

from __future__ import annotations

import re
from typing import Any

from guardrail_authz.policy.openapi_doc import Loc, OpenApiDocument, at
from guardrail_authz.policy.openapi_schema import SchemaConverter
from guardrail_authz.policy.yamlsrc import line_of

LOCATIONS = ("query", "header", "path", "cookie")
_TCHARS = r"[a-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA = re.compile(rf"{_TCHARS}/{_TCHARS}")

Params = dict[tuple[str, str], tuple[dict[str, Any], Loc]]  # (name, in) → parameter, where


def parameters(doc: OpenApiDocument, container: dict[str, Any], field: str) -> Params:
    """The `parameters` of a path item or operation, `$ref`s followed; bad ones are reported."""
    raw = container.get("parameters")
    if raw is None:
        return {}
    if not isinstance(raw, list):
        doc.error("openapi.field", "must be a list", at(container, "parameters", field))
        return {}
    out: Params = {}
    for i, item in enumerate(raw):
        item_where = (f"{field}.parameters[{i}]", line_of(raw, i))
        resolved = doc.deref(item, item_where)
        if resolved is None:
            continue
        param, p_where = resolved
        if not isinstance(param, dict):
            doc.error("openapi.parameter", "must be a mapping (a parameter)", p_where)
            continue
        name, loc = param.get("name"), param.get("in")
        if not isinstance(name, str) or not name:
            doc.error("openapi.parameter", "needs a 'name'", p_where)
            continue
        if loc not in LOCATIONS:
            msg = f"'in' must be one of {', '.join(LOCATIONS)}"
            doc.error("openapi.parameter", msg, at(param, "in", p_where[0]))
            continue
        key = (name.lower() if loc == "header" else name, str(loc))
        if key in out:
            doc.error("openapi.parameter", f"duplicate {loc} parameter {name!r}", item_where)
            continue
        out[key] = (param, p_where)
    return out


def request_body(
    doc: OpenApiDocument, schemas: SchemaConverter, op: dict[str, Any], where: Loc
) -> tuple[dict[str, Any] | None, tuple[str, ...], bool]:
    """The JSON body schema (or None), the media types and whether a body is required."""
    if "requestBody" not in op:
        return None, (), False
    resolved = doc.deref(op["requestBody"], at(op, "requestBody", where[0]))
    if resolved is None:
        return None, (), False
    body, b_where = resolved
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(content, dict) or not content:
        msg = "needs 'content': a mapping of media types to schemas"
        doc.error("openapi.request_body", msg, b_where)
        return None, (), False
    required = body.get("required", False)
    if not isinstance(required, bool):
        doc.error("openapi.field", "must be true or false", at(body, "required", b_where[0]))
    types: list[str] = []
    for key in content:
        media_type = str(key).split(";", 1)[0].strip().lower()
        if not _MEDIA.fullmatch(media_type):
            msg = f"{key!r} is not a media type like application/json"
            doc.error("openapi.request_body", msg, at(content, key, f"{b_where[0]}.content"))
        elif media_type not in types:
            types.append(media_type)
    json_types = [k for k in content if _is_json(str(k))]
    json_types.sort(key=lambda k: str(k).split(";")[0].strip().lower() != "application/json")
    schema: dict[str, Any] | None = None
    if json_types:
        media_where = at(content, json_types[0], f"{b_where[0]}.content")
        media = content[json_types[0]]
        if not isinstance(media, dict):
            doc.error("openapi.field", "must be a mapping (a media type)", media_where)
        elif "schema" in media:
            schema = schemas.root(media["schema"], at(media, "schema", media_where[0]))
    return schema, tuple(types), required is True


def _is_json(media: str) -> bool:
    base = media.split(";", 1)[0].strip().lower()
    return base == "application/json" or (
        base.startswith("application/") and base.endswith("+json")
    )
