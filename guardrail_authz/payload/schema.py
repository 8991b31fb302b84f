"""JSON Schema 2020-12 checks compiled at load time; violations are short and never echo values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs

from guardrail_authz.payload.schema_coerce import coerce
from guardrail_authz.payload.schema_nodes import DIALECT, map_subschemas, plain, resolve_pointer
from guardrail_authz.payload.schema_strict import strict_rewrite
from guardrail_authz.payload.schema_violations import Violation, field_path, to_violation

__all__ = [
    "BASES",
    "DIALECT",
    "CompiledSchema",
    "SchemaError",
    "Violation",
    "coerce",
    "compile_schema",
    "field_path",
    "map_subschemas",
    "plain",
    "resolve_pointer",
]

BASES = ("body", "query", "header", "path")
# fancy-regex backtracks only for look-around and back-references; bound it (ReDoS).
_PATTERNS = jsonschema_rs.FancyRegexOptions(backtrack_limit=100_000)


class SchemaError(Exception):
    """The schema itself is invalid or unsupported; `path` points into the schema."""

    def __init__(
        self, message: str, path: tuple[str | int, ...] = (), reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.reason = reason or message  # the message without its location


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
            return to_violation(error, self._base)
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
    compiled = strict_rewrite(data, origins) if strict else data
    try:
        validator = jsonschema_rs.Draft202012Validator(
            compiled, offline=True, pattern_options=_PATTERNS
        )
    except jsonschema_rs.ValidationError as exc:
        raise _schema_error(exc, origins) from None
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        raise SchemaError(f"invalid schema: {exc}") from None
    return CompiledSchema(validator, base, compiled)


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
