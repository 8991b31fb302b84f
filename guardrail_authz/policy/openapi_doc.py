"""One OpenAPI document being read: located fields, local `$ref`s and errors reported once."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.yamlsrc import line_of

Loc = tuple[str, int]  # (field, line)


class OpenApiDocument:
    """The parsed document with its file name; errors go to the sink once per code and place."""

    def __init__(self, data: dict[str, Any], file: str, sink: ErrorSink) -> None:
        self.data = data
        self.file = file
        self.sink = sink
        self.reported: set[tuple[str, int, str]] = set()

    def error(self, code: str, message: str, where: Loc) -> None:
        """Report an error at a location, unless the same code was reported there already."""
        if (code, where[1], where[0]) not in self.reported:
            self.reported.add((code, where[1], where[0]))
            self.sink.add(code, message, self.file, where[1], where[0])

    def schemas(self) -> dict[str, Any]:
        """The `components.schemas` mapping, or {}."""
        components = self.data.get("components")
        found = components.get("schemas") if isinstance(components, dict) else None
        return found if isinstance(found, dict) else {}

    def deref(self, node: Any, where: Loc) -> tuple[Any, Loc] | None:
        """Follow local `$ref`s (parameters, request bodies, path items); None after an error."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            ref, ref_where = node["$ref"], at(node, "$ref", where[0])
            if not isinstance(ref, str):
                self.error("openapi.ref", "must be a string", ref_where)
                return None
            if not ref.startswith("#/"):
                msg = f"external reference {ref!r}: only local references (#/...) are read"
                self.error("openapi.ref", msg, ref_where)
                return None
            if ref in seen:
                msg = f"reference cycle: {' -> '.join([*seen, ref])}"
                self.error("openapi.ref_cycle", msg, ref_where)
                return None
            seen.append(ref)
            located = self.locate(ref)
            if located is None:
                self.error("openapi.ref", f"{ref!r} does not resolve in this document", ref_where)
                return None
            node, where = located
        return node, where

    def locate(self, ref: str) -> tuple[Any, Loc] | None:
        """The node a local '#/a/b' reference names and where it is, or None."""
        node: Any = self.data
        where: Loc = ("", 0)
        for part in (unescape(p) for p in ref[2:].split("/")):
            if not isinstance(node, dict) or part not in node:
                return None
            where = at(node, part, where[0])
            node = node[part]
        return node, where


def unescape(part: str) -> str:
    """One JSON-pointer segment of a URI fragment, decoded."""
    return unquote(part).replace("~1", "/").replace("~0", "~")


def at(container: Any, key: str | int, field: str) -> Loc:
    """Where a key of a mapping (or item of a list) is: dotted field and line."""
    sub = f"{field}[{key}]" if isinstance(key, int) else f"{field}.{key}" if field else key
    return sub, line_of(container, key)


def descend(node: Any, path: tuple[str | int, ...], where: Loc) -> Loc:
    """Follow a path into the document as far as it exists; the deepest location found."""
    for part in path:
        key: str | int
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key = part
        elif isinstance(node, dict) and str(part) in node:
            key = str(part)
        else:
            break
        field, line = at(node, key, where[0])
        where = (field, line or where[1])
        node = node[key]
    return where
