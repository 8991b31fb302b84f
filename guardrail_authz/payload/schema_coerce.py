"""Query and header strings typed per a schema's properties before they are validated."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from guardrail_authz.payload.schema_nodes import COMBINATORS, resolve_pointer

_INT = re.compile(r"-?[0-9]{1,30}")
_NUM = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?")


def coerce(values: Mapping[str, list[str]], schema: Mapping[str, Any]) -> dict[str, object]:
    """Type query/header strings per the schema's properties; unconvertible values stay strings.

    An array property takes repeated values as items, or splits a single value on commas
    (OpenAPI `style: form` with and without `explode`). A scalar property given several values
    becomes a list, so the validator reports a type error instead of checking only one of them
    (parameter pollution: upstreams differ on which value wins).
    """
    props = schema.get("properties")
    out: dict[str, object] = {}
    for name, items in values.items():
        if not items:
            continue
        prop = props.get(name) if isinstance(props, Mapping) else None
        types = _types(prop, schema, 0)
        if "array" in types and isinstance(prop, Mapping):
            target = prop
            if "items" not in prop and isinstance(prop.get("$ref"), str):
                target = resolve_pointer(schema, prop["$ref"]) or prop
            item_types = _types(target.get("items"), schema, 0)
            parts = items[0].split(",") if len(items) == 1 else items
            out[name] = [_convert(p, item_types) for p in parts]
            continue
        converted = [_convert(v, types) for v in items] if types else list(items)
        out[name] = converted[0] if len(converted) == 1 else converted
    return out


def _types(prop: Any, root: Mapping[str, Any], depth: int) -> tuple[str, ...]:
    if not isinstance(prop, Mapping) or depth > 8:
        return ()
    declared = prop.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    ref = prop.get("$ref")
    if isinstance(ref, str):
        return _types(resolve_pointer(root, ref), root, depth + 1)
    found: list[str] = []
    for key in COMBINATORS:
        for branch in prop.get(key) or ():
            found.extend(t for t in _types(branch, root, depth + 1) if t not in found)
    if not found:
        options = prop.get("enum") or ([prop["const"]] if "const" in prop else [])
        for value in options if isinstance(options, list) else ():
            kind = _json_type(value)
            if kind not in found:
                found.append(kind)
    return tuple(found)


def _convert(text: str, types: tuple[str, ...]) -> object:
    if ("integer" in types or "number" in types) and _INT.fullmatch(text):
        return int(text)
    if "number" in types and _NUM.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "null" if value is None else "object"
