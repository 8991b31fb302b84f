"""Strict mode: a schema rewritten so that object schemas listing properties reject others."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from guardrail_authz.payload.schema_nodes import COMBINATORS, map_subschemas, resolve_pointer


def strict_rewrite(
    root: dict[str, Any], origins: dict[str, tuple[str | int, ...]]
) -> dict[str, Any]:
    """The strict form of a schema; `origins` gains each added open copy's source path."""
    return _Strict(root, origins).run()


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
