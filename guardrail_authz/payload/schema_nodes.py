"""JSON Schema documents as data: direct subschemas, local pointers and plain JSON values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMBINATORS = ("allOf", "anyOf", "oneOf")
# Keywords whose value is a schema, a list of schemas, or a name → schema mapping.
_ONE = (
    "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "additionalItems",
    "not", "if", "then", "else", "contains", "propertyNames", "contentSchema",
)  # fmt: skip
_LISTS = (*COMBINATORS, "prefixItems")
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def map_subschemas(
    node: Mapping[str, Any], fn: Callable[[tuple[str | int, ...], Any], Any]
) -> dict[str, Any]:
    """A copy of a schema object with fn(where, subschema) applied to each direct subschema.

    `where` is its path below the object: ('items',), ('allOf', 0), ('properties', 'id').
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _MAPS and isinstance(value, Mapping):
            out[key] = {name: fn((key, name), sub) for name, sub in value.items()}
        elif (key in _LISTS or key == "items") and isinstance(value, list):
            out[key] = [fn((key, i), sub) for i, sub in enumerate(value)]
        elif key in _ONE or key == "items":
            out[key] = fn((key,), value)
        else:
            out[key] = value
    return out


def resolve_pointer(root: Any, ref: str) -> Any:
    """The node a local '#/a/b' reference names in root, or None."""
    if not ref.startswith("#"):
        return None
    node = root
    for raw in unquote(ref[1:]).split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def plain(value: Any) -> Any:
    """Plain dicts and lists (YAML containers carry line numbers; the validator wants JSON)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
