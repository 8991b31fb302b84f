"""Typed field access over YAML mappings that reports mistakes with file, line and field."""

from __future__ import annotations

from typing import Any

from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.source import Where
from guardrail_authz.policy.yamlsrc import YList, YMap, line_of


class Reader:
    """Reads one mapping, checking types and unknown fields against the allowed set."""

    def __init__(self, data: Any, path: str, file: str, sink: ErrorSink, line: int = 0) -> None:
        self.file = file
        self.path = path
        self.sink = sink
        self.ok = isinstance(data, dict)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.line = getattr(data, "line", line)
        if not self.ok:
            self.sink.add("field.type", "must be a mapping", file, self.line, path)

    def where(self, key: str | None = None) -> Where:
        """Location of the mapping or one of its keys."""
        if key is None:
            return Where(self.file, self.line, self.path)
        return Where(self.file, line_of(self.data, key), self.field(key))

    def field(self, key: str) -> str:
        """Dotted field path of a key."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, code: str, message: str) -> None:
        """Record an error at a key (or the mapping itself)."""
        w = self.where(key)
        self.sink.add(code, message, w.file, w.line, w.field)

    def only(self, *allowed: str) -> None:
        """Report every key that is not in the allowed set."""
        for key in self.data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.error(key, "field.unknown", f"unknown field {key!r} (known: {hint})")

    def _get(self, key: str, kind: type | tuple[type, ...], label: str, required: bool) -> Any:
        if key not in self.data:
            if required and self.ok:
                self.error(None, "field.required", f"missing required field {self.field(key)!r}")
            return None
        value = self.data[key]
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            self.error(key, "field.type", f"must be {label}, got a boolean")
            return None
        if not isinstance(value, kind):
            self.error(key, "field.type", f"must be {label}, got {_kind(value)}")
            return None
        return value

    def text(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        """A string field; numbers are not silently converted."""
        value = self._get(key, str, "a string", required)
        if value is not None and not value.strip():
            self.error(key, "field.empty", "must not be empty")
            return None
        return str(value) if value is not None else default

    def scalar_text(self, key: str, *, required: bool = False) -> str | None:
        """A string field that also accepts integers (e.g. versions)."""
        value = self._get(key, (str, int), "a string", required)
        return None if value is None else str(value)

    def integer(
        self, key: str, *, required: bool = False, lo: int = 0, hi: int = 2**31
    ) -> int | None:
        """An integer field within [lo, hi]."""
        value = self._get(key, int, "an integer", required)
        if value is not None and not lo <= value <= hi:
            self.error(key, "field.range", f"must be between {lo} and {hi}, got {value}")
            return None
        return value  # type: ignore[no-any-return]

    def flag(self, key: str, *, default: bool | None = None) -> bool | None:
        """A boolean field."""
        value = self._get(key, bool, "true or false", False)
        return default if value is None else bool(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """A string field restricted to a set of values."""
        value = self.text(key)
        if value is None:
            return default
        if value not in choices:
            self.error(key, "field.choice", f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def mapping(self, key: str, *, required: bool = False) -> Reader | None:
        """A nested mapping as a Reader, or None when absent."""
        value = self._get(key, dict, "a mapping", required)
        if value is None:
            return None
        return Reader(value, self.field(key), self.file, self.sink, line_of(self.data, key))

    def items(self, key: str, *, required: bool = False) -> list[tuple[Any, str, int]]:
        """Items of a list field as (item, field path, line); a scalar is not a list."""
        value = self._get(key, list, "a list", required)
        if value is None:
            return []
        if required and not value:
            self.error(key, "field.empty", "must not be empty")
        base = self.field(key)
        return [(item, f"{base}[{i}]", line_of(value, i)) for i, item in enumerate(value)]

    def text_list(
        self, key: str, *, required: bool = False, lower: bool = False
    ) -> tuple[str, ...]:
        """A list of non-empty strings."""
        out: list[str] = []
        for item, path, line in self.items(key, required=required):
            if not isinstance(item, str) or not item.strip():
                self.sink.add("field.type", "must be a non-empty string", self.file, line, path)
                continue
            out.append(item.lower() if lower else item)
        return tuple(out)

    def sub(self, item: Any, path: str, line: int) -> Reader:
        """A Reader for a list item."""
        return Reader(item, path, self.file, self.sink, line)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind(value: Any) -> str:
    if isinstance(value, YMap | dict):
        return "a mapping"
    if isinstance(value, YList | list):
        return "a list"
    if value is None:
        return "null"
    return type(value).__name__
