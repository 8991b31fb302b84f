"""JSON Schema 2020-12 checks compiled at load time; violations are short and never echo values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jsonschema_rs

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASES = ("body", "query", "header")
COMBINATORS = ("allOf", "anyOf", "oneOf")
# Keywords whose value is a schema, a list of schemas, or a name → schema mapping.
_ONE = (
    "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "additionalItems",
    "not", "if", "then", "else", "contains", "propertyNames", "contentSchema",
)  # fmt: skip
_LISTS = (*COMBINATORS, "prefixItems")
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# fancy-regex backtracks only for look-around and back-references; bound it (ReDoS).
_PATTERNS = jsonschema_rs.FancyRegexOptions(backtrack_limit=100_000)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_$@-]{1,64}")
_MAX_FIELD = 256
_INT = re.compile(r"-?[0-9]{1,30}")
_NUM = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?")


class SchemaError(Exception):
    """The schema itself is invalid or unsupported; `path` points into the schema."""

    def __init__(
        self, message: str, path: tuple[str | int, ...] = (), reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.reason = reason or message  # the message without its location


@dataclass(frozen=True, slots=True)
class Violation:
    """The first place an instance breaks its schema: field path, keyword and a short message."""

    field: str
    rule: str
    message: str


class CompiledSchema:
    """A validator built once at load time; `check` returns the first violation or None."""

    __slots__ = ("_base", "_validator", "schema")

    def __init__(self, validator: jsonschema_rs.Validator, base: str, schema: dict[str, Any]):
        self._validator = validator
        self._base = base
        self.schema = schema  # what was compiled (after the strict rewrite)

    def check(self, instance: object) -> Violation | None:
        """First violation in the validator's (deterministic) keyword order, or None."""
        try:
            self._validator.validate(instance)  # stops at the first error
        except jsonschema_rs.ValidationError as error:
            return _violation(error, self._base)
        except ValueError:  # not JSON data (a set, bytes, a non-string key): never valid
            return Violation(self._base, "type", f"{self._base}: is not a JSON value")
        return None


def compile_schema(schema: Mapping[str, Any], *, base: str, strict: bool = False) -> CompiledSchema:
    """Compile a 2020-12 schema for body, query or header values; raises SchemaError."""
    if base not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}, not {base!r}")
    data = plain(schema)
    if not isinstance(data, dict):
        raise SchemaError("a schema must be a mapping")
    dialect = data.get("$schema")
    if dialect is not None and str(dialect).rstrip("#") != DIALECT:
        raise SchemaError(
            f"only JSON Schema 2020-12 is supported ($schema: {DIALECT})", ("$schema",)
        )
    origins: dict[str, tuple[str | int, ...]] = {}
    compiled = _Strict(data, origins).run() if strict else data
    try:
        validator = jsonschema_rs.Draft202012Validator(
            compiled, offline=True, pattern_options=_PATTERNS
        )
    except jsonschema_rs.ValidationError as exc:
        raise _schema_error(exc, origins) from None
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        raise SchemaError(f"invalid schema: {exc}") from None
    return CompiledSchema(validator, base, compiled)


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


# ---- strict mode --------------------------------------------------------------------------------


class _Strict:
    """Closes every object schema that lists properties and does not say otherwise.

    A plain object schema gets `additionalProperties: false`. A schema composed with
    allOf/anyOf/oneOf (or a `$ref` next to `properties`) gets `unevaluatedProperties: false`
    instead and its branches stay open at their top level (a `$ref` branch points to an open
    copy of its target), because `additionalProperties: false` in an allOf branch would reject
    the properties the other branches add. Nested property schemas are closed as usual.
    """

    def __init__(self, root: dict[str, Any], origins: dict[str, tuple[str | int, ...]]) -> None:
        self.root = root
        self.origins = origins  # open copy name → the pointer path it copies
        self.added: dict[str, Any] = {}
        self.memo: dict[str, str] = {}
        self.can_open = not any(_has_id(v) for v in root.values())

    def run(self) -> dict[str, Any]:
        out: dict[str, Any] = self.node(self.root, open_=False)
        if self.added:
            defs = dict(out.get("$defs") or {})
            defs.update(self.added)
            out["$defs"] = defs
        return out

    def node(self, node: Any, *, open_: bool) -> Any:
        if not isinstance(node, dict):
            return node
        composite = any(k in node for k in COMBINATORS) or ("$ref" in node and "properties" in node)
        out = map_subschemas(node, lambda w, v: self.node(v, open_=w[0] in COMBINATORS))
        ref = node.get("$ref")
        if isinstance(ref, str) and (open_ or composite) and self.can_open:
            out["$ref"] = self.open_ref(ref)
        if open_ or "additionalProperties" in node or "unevaluatedProperties" in node:
            return out
        if composite:
            if self.lists_properties(node, set()):
                out["unevaluatedProperties"] = False
        elif "properties" in node:
            out["additionalProperties"] = False
        return out

    def open_ref(self, ref: str) -> str:
        if ref in self.memo:
            return self.memo[ref]
        target = resolve_pointer(self.root, ref)
        if not isinstance(target, dict):
            return ref  # anchors and unresolvable refs stay closed; the compiler reports the latter
        parts = [p.replace("~1", "/").replace("~0", "~") for p in unquote(ref[1:]).split("/")[1:]]
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", parts[-1] if parts else "root")[:40]
        taken = set(self.root.get("$defs") or {}) | set(self.added)
        name = f"{slug}.open"
        while name in taken:
            name += "_"
        self.memo[ref] = pointer = f"#/$defs/{name}"
        self.added[name] = None  # reserved: a recursive target refers to itself
        skip = ("$defs", "definitions", "$id", "$schema") if target is self.root else ()
        copy = {k: v for k, v in target.items() if k not in skip}
        self.origins[name] = tuple(int(p) if p.isdigit() else p for p in parts)
        self.added[name] = self.node(copy, open_=True)
        return pointer

    def lists_properties(self, node: Any, seen: set[int]) -> bool:
        if not isinstance(node, dict) or id(node) in seen:
            return False
        seen.add(id(node))
        if "properties" in node:
            return True
        branches = [b for k in COMBINATORS for b in node.get(k) or () if isinstance(b, dict)]
        ref = node.get("$ref")
        if isinstance(ref, str):
            branches.append(resolve_pointer(self.root, ref))
        return any(self.lists_properties(b, seen) for b in branches)


def _has_id(node: Any) -> bool:
    """True when a subschema has its own `$id` (refs inside it resolve against a new base)."""
    if isinstance(node, dict):
        return "$id" in node or any(_has_id(v) for v in node.values())
    return isinstance(node, list) and any(_has_id(v) for v in node)


# ---- query and header values -------------------------------------------------------------------


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


# ---- violations -------------------------------------------------------------------------------

_ARTICLE = {"integer": "an integer", "object": "an object", "array": "an array", "null": "null"}
_TEXT: dict[str, str] = {
    "minLength": "must be at least {} characters",
    "maxLength": "must be at most {} characters",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "minProperties": "must have at least {} properties",
    "maxProperties": "must have at most {} properties",
    "multipleOf": "must be a multiple of {}",
    "format": "must be a valid {}",
    "pattern": "does not match the required pattern",
    "const": "must equal the allowed value",
    "uniqueItems": "must not contain duplicate items",
    "contains": "must contain a matching item",
    "not": "must not match the excluded schema",
    "falseSchema": "is not allowed",
    "propertyNames": "has a property name that is not allowed",
    "anyOf": "does not match any of the allowed schemas",
    "oneOf": "must match exactly one of the allowed schemas",
    "required": "is required",
    "additionalProperties": "property not allowed",
    "unevaluatedProperties": "property not allowed",
    "unevaluatedItems": "item not allowed",
    "additionalItems": "item not allowed",
}


_ONE_UNIT = re.compile(r"(?<![0-9.])1 (characters|items|properties)\b")
_SINGULAR = {"characters": "character", "items": "item", "properties": "property"}
_ONE_OF_FAILED = (
    jsonschema_rs.ValidationErrorKind.AnyOf | jsonschema_rs.ValidationErrorKind.OneOfNotValid
)
_NAMES_PROPERTY = (
    jsonschema_rs.ValidationErrorKind.AdditionalProperties
    | jsonschema_rs.ValidationErrorKind.UnevaluatedProperties
)


def _violation(error: jsonschema_rs.ValidationError, base: str) -> Violation:
    error = _best(error)
    kind = error.kind
    rule = kind.name
    path: list[str | int] = list(error.instance_path)
    detail = ""
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        path.append(kind.property)
    elif isinstance(kind, _NAMES_PROPERTY):
        path.append(kind.unexpected[0] if kind.unexpected else "")
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        detail = _type_text(kind.types)
    elif (types := _branch_types(error)) is not None:
        rule, detail = "type", _type_text(types)
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        detail = _enum_text(kind.options)
    elif isinstance(
        kind,
        jsonschema_rs.ValidationErrorKind.BacktrackLimitExceeded
        | jsonschema_rs.ValidationErrorKind.RegexEngineFailure,
    ):
        rule, detail = "pattern", "could not be checked against the required pattern"
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.OneOfMultipleValid):
        detail = "matches more than one of the allowed schemas"
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Referencing):
        rule, detail = "$ref", "could not be checked (unresolved schema reference)"
    if not detail:
        template = _TEXT.get(rule, "does not satisfy '" + rule + "'")
        detail = template.format(_limit(kind)) if "{}" in template else template
        detail = _ONE_UNIT.sub(lambda m: "1 " + _SINGULAR[m[1]], detail)
    field = field_path(base, path)
    return Violation(field, rule, f"{field}: {detail}")


def _best(error: jsonschema_rs.ValidationError) -> jsonschema_rs.ValidationError:
    """For anyOf/oneOf failures, the error of the branch that got furthest into the instance."""
    for _ in range(32):
        if not isinstance(error.kind, _ONE_OF_FAILED):
            return error
        depth = _depth(error)
        best: jsonschema_rs.ValidationError | None = None
        for branch in error.kind.context:
            for inner in branch:
                if _depth(inner) > depth and (best is None or _depth(inner) > _depth(best)):
                    best = inner
        if best is None:
            return error
        error = best
    return error


def _branch_types(error: jsonschema_rs.ValidationError) -> list[str] | None:
    """When every anyOf/oneOf branch failed on its type alone, the types they accept."""
    if not isinstance(error.kind, _ONE_OF_FAILED):
        return None
    types: list[str] = []
    for branch in error.kind.context:
        for inner in branch:
            if not isinstance(inner.kind, jsonschema_rs.ValidationErrorKind.Type):
                return None
            types.extend(t for t in inner.kind.types if t not in types)
    return types or None


def _depth(error: jsonschema_rs.ValidationError) -> int:
    """How far into the instance an error is; a missing or extra property counts one deeper."""
    named = isinstance(error.kind, _NAMES_PROPERTY | jsonschema_rs.ValidationErrorKind.Required)
    return len(error.instance_path) + (1 if named else 0)


def _type_text(types: list[str]) -> str:
    return "must be " + " or ".join(_ARTICLE.get(t, f"a {t}") for t in sorted(types))


def _enum_text(options: list[Any]) -> str:
    if 0 < len(options) <= 5 and all(
        isinstance(o, str | int | float | bool) or o is None for o in options
    ):
        shown = [json.dumps(o)[:40] for o in options]
        return "must be one of " + ", ".join(shown)
    return "must be one of the allowed values"


def _limit(kind: jsonschema_rs.ValidationErrorKind) -> str:
    for attr in ("limit", "multiple_of", "format"):
        value = getattr(kind, attr, None)
        if value is not None:
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return str(value)
    return "?"


def field_path(base: str, path: list[str | int] | tuple[str | int, ...]) -> str:
    """'body.items[2].name' from a base and an instance path; odd or long names are quoted."""
    out = base
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SAFE_NAME.fullmatch(part):
            out += "." + part
        else:
            out += "[" + json.dumps(part[:64]) + "]"
    return out if len(out) <= _MAX_FIELD else out[:_MAX_FIELD] + "..."


def _schema_error(
    exc: jsonschema_rs.ValidationError, origins: dict[str, tuple[str | int, ...]]
) -> SchemaError:
    path = tuple(exc.instance_path)
    if len(path) >= 2 and path[0] == "$defs" and path[1] in origins:
        path = origins[str(path[1])] + path[2:]
    if isinstance(exc.kind, jsonschema_rs.ValidationErrorKind.Referencing):
        first = exc.message.split("\n", 1)[0]
        return SchemaError(f"unsupported $ref (only local references, no network): {first}", path)
    where = "/".join(str(p) for p in path) or "(root)"
    reason = exc.message.splitlines()[0]
    return SchemaError(f"invalid schema at {where}: {reason}", path, f"invalid schema: {reason}")


def plain(value: Any) -> Any:
    """Plain dicts and lists (YAML containers carry line numbers; the validator wants JSON)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
