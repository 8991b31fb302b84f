"""Validation errors as violations: field path, keyword and a short message without the value."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

_SAFE_NAME = re.compile(r"[A-Za-z0-9_$@-]{1,64}")
_MAX_FIELD = 256


@dataclass(frozen=True, slots=True)
class Violation:
    """The first place an instance breaks its schema: field path, keyword and a short message."""

    field: str
    rule: str
    message: str


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


def to_violation(error: jsonschema_rs.ValidationError, base: str) -> Violation:
    """The violation a validator error reports; values in the instance are never quoted."""
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
