"""Path templates ('/orders/{id}', '/static/**') in a segment trie with per-method leaves."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
ANY_METHOD = "*"
_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


class TemplateError(ValueError):
    """A path template that cannot be compiled."""


def parse_template(template: str) -> tuple[str, ...]:
    """Split a template into segments: literals, '{name}' → '{}', '*' → '{}', '**' (last only)."""
    parts = [p for p in template.split("/") if p]
    out: list[str] = []
    for i, part in enumerate(parts):
        if part == "**":
            if i != len(parts) - 1:
                raise TemplateError(f"'**' may only be the last segment in {template!r}")
            out.append("**")
        elif part == "*" or _PARAM.match(part):
            out.append("{}")
        elif "{" in part or "}" in part or "*" in part:
            raise TemplateError(f"segment {part!r} of {template!r}: use '{{name}}', '*' or '**'")
        else:
            out.append(part)
    return tuple(out)


@dataclass(slots=True)
class _Node(Generic[T]):
    literal: dict[str, _Node[T]] = field(default_factory=dict)
    param: _Node[T] | None = None
    rest: dict[str, T] = field(default_factory=dict)  # '**' leaves, by method
    leaf: dict[str, T] = field(default_factory=dict)  # exact leaves, by method


class PathTrie(Generic[T]):
    """Maps (segments, method) to a value; literal beats '{param}' beats '**'."""

    __slots__ = ("_root",)

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def insert(self, segments: tuple[str, ...], method: str, value: T) -> T | None:
        """Add a value; returns the value already there (a conflict) or None."""
        node = self._root
        for seg in segments:
            if seg == "**":
                return _put(node.rest, method, value)
            if seg == "{}":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.literal.setdefault(seg, _Node())
        return _put(node.leaf, method, value)

    def lookup(self, segments: list[str], method: str) -> T | None:
        """Most specific value for the segments and method, or None."""
        return _walk(self._root, segments, 0, method)


def _put(slot: dict[str, T], method: str, value: T) -> T | None:
    existing = slot.get(method)
    if existing is not None:
        return existing
    slot[method] = value
    return None


def _pick(slot: dict[str, T], method: str) -> T | None:
    if not slot:
        return None
    found = slot.get(method)
    return found if found is not None else slot.get(ANY_METHOD)


def _walk(node: _Node[T], segs: list[str], i: int, method: str) -> T | None:
    if i == len(segs):
        found = _pick(node.leaf, method)
        return found if found is not None else _pick(node.rest, method)
    child = node.literal.get(segs[i])
    if child is not None:
        found = _walk(child, segs, i + 1, method)
        if found is not None:
            return found
    if node.param is not None:
        found = _walk(node.param, segs, i + 1, method)
        if found is not None:
            return found
    return _pick(node.rest, method)
