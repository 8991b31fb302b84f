"""OpenAPI schemas as self-contained JSON Schema 2020-12: components bundled as `$defs`."""

from __future__ import annotations

import json
from typing import Any

from guardrail_authz.payload.schema import (
    SchemaError,
    compile_schema,
    map_subschemas,
    plain,
    resolve_pointer,
)
from guardrail_authz.policy.openapi_doc import Loc, OpenApiDocument, at, descend, unescape
from guardrail_authz.policy.yamlsrc import line_of

_COMPONENT = "#/components/schemas/"
# OpenAPI-only annotations and what would change how refs resolve; `x-` keys go too.
_DROPPED = frozenset({"example", "discriminator", "xml", "externalDocs", "$schema", "$id"})


class SchemaConverter:
    """Converts a document's schemas to 2020-12 and checks each result compiles (once each)."""

    def __init__(self, doc: OpenApiDocument, *, v30: bool = False) -> None:
        self.doc = doc
        self.v30 = v30  # OpenAPI 3.0: nullable and boolean exclusive bounds are rewritten
        self.components: dict[str, tuple[Any, set[str]]] = {}
        self.validated: set[str] = set()

    def root(self, node: Any, where: Loc) -> dict[str, Any]:
        """A self-contained, checked schema for one schema of the document (e.g. a body)."""
        bundle = _Bundle(self)
        schema = bundle.finish(bundle.convert(node, where))
        self.validate(schema, {(): (node, where)})
        return schema

    def group(
        self, props: dict[str, tuple[Any, Loc]], required: list[str]
    ) -> dict[str, Any] | None:
        """An object schema for the parameters in one location, or None when there are none."""
        if not props:
            return None
        bundle = _Bundle(self)
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        for name, (node, where) in props.items():
            schema["properties"][name] = bundle.convert(node, where)
        if required:
            schema["required"] = required
        schema = bundle.finish(schema)
        self.validate(schema, {("properties", n): v for n, v in props.items()})
        return schema

    def validate(self, schema: dict[str, Any], roots: dict[tuple[str, ...], Any]) -> None:
        """Compile a converted schema once; an error is located in the document by its path."""
        key = json.dumps(schema, sort_keys=True)
        if key in self.validated:  # operations often share a body or parameter schema
            return
        self.validated.add(key)
        try:
            compile_schema(schema, base="body")
        except SchemaError as exc:
            path = exc.path
            if len(path) >= 2 and path[0] == "$defs" and str(path[1]) in self.components:
                node = self.doc.schemas()[str(path[1])]
                where = (f"components.schemas.{path[1]}", self.component_line(str(path[1])))
                path = path[2:]
            else:
                prefix = next((p for p in roots if path[: len(p)] == p), None)
                if prefix is None:
                    prefix = next(iter(roots))
                node, where = roots[prefix]
                path = path[len(prefix) :]
            self.doc.error("openapi.schema", exc.reason, descend(node, path, where))

    def component(self, name: str) -> tuple[Any, set[str]]:
        """A component schema converted once: its 2020-12 form and the components it names."""
        if name not in self.components:
            deps: set[str] = set()
            self.components[name] = ({}, deps)  # reserved while converting
            node = self.doc.schemas()[name]
            where = (f"components.schemas.{name}", self.component_line(name))
            self.components[name] = (self.convert(node, where, deps), deps)
        return self.components[name]

    def component_line(self, name: str) -> int:
        """The line a component schema starts on."""
        return line_of(self.doc.schemas(), name)

    def convert(self, node: Any, where: Loc, deps: set[str]) -> Any:
        """One schema in the 2020-12 dialect; `$ref`s to components become `#/$defs/<name>`."""
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            self.doc.error("openapi.schema", "must be a schema (a mapping)", where)
            return {}

        def sub(w: tuple[str | int, ...], value: Any) -> Any:
            return self.convert(value, descend(node, w, where), deps)

        out = map_subschemas(node, sub)
        for key in [k for k in out if k.startswith("x-") or k in _DROPPED]:
            del out[key]
        if "$ref" in node:
            ref = self.schema_ref(node["$ref"], at(node, "$ref", where[0]), deps)
            if ref is None:
                del out["$ref"]
            else:
                out["$ref"] = ref
        props = node.get("properties")
        if isinstance(out.get("required"), list) and isinstance(props, dict):
            # readOnly properties are not sent in requests, so they cannot be required there.
            out["required"] = [r for r in out["required"] if not self.read_only(props.get(r))]
        return _from_30(out) if self.v30 else out

    def schema_ref(self, ref: Any, where: Loc, deps: set[str]) -> str | None:
        """A component `$ref` as a `$defs` pointer (its name joins deps); None after an error."""
        if not isinstance(ref, str):
            self.doc.error("openapi.ref", "must be a string", where)
            return None
        if not ref.startswith("#"):
            msg = f"external reference {ref!r}: only local references (#/components/...) are read"
            self.doc.error("openapi.ref", msg, where)
            return None
        if not ref.startswith(_COMPONENT):
            msg = f"schema reference {ref!r} must point into #/components/schemas"
            self.doc.error("openapi.ref", msg, where)
            return None
        escaped, _, tail = ref[len(_COMPONENT) :].partition("/")
        if (
            unescape(escaped) not in self.doc.schemas()
            or resolve_pointer(self.doc.data, ref) is None
        ):
            self.doc.error("openapi.ref", f"{ref!r} does not resolve in this document", where)
            return None
        deps.add(unescape(escaped))
        return f"#/$defs/{escaped}" + (f"/{tail}" if tail else "")

    def read_only(self, prop: Any) -> bool:
        """True when a property schema (or what it refers to) is marked readOnly."""
        for _ in range(8):
            if not isinstance(prop, dict):
                return False
            if prop.get("readOnly") is True:
                return True
            ref = prop.get("$ref")
            prop = resolve_pointer(self.doc.data, ref) if isinstance(ref, str) else None
        return False


class _Bundle:
    """Collects the component schemas one schema needs into its `$defs`."""

    def __init__(self, converter: SchemaConverter) -> None:
        self.converter = converter
        self.defs: dict[str, Any] = {}

    def convert(self, node: Any, where: Loc) -> Any:
        deps: set[str] = set()
        out = self.converter.convert(node, where, deps)
        self.include(deps)
        return out

    def include(self, names: set[str]) -> None:
        for name in sorted(names):
            if name not in self.defs:
                converted, deps = self.converter.component(name)
                self.defs[name] = converted
                self.include(deps)

    def finish(self, root: Any) -> dict[str, Any]:
        """The root schema with its `$defs`, as plain JSON data."""
        if not isinstance(root, dict):  # a boolean schema
            return {} if root else {"not": {}}
        if self.defs:
            root = {**root, "$defs": {**(root.get("$defs") or {}), **self.defs}}
        out: dict[str, Any] = plain(root)
        return out


def _from_30(out: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 keywords in 2020-12 form: nullable, boolean exclusiveMinimum/Maximum."""
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(flag), bool) and out.pop(flag) and bound in out:
            out[flag] = out.pop(bound)
    if out.pop("nullable", None) is not True:
        return out
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    else:  # e.g. `allOf: [$ref]` + nullable, the usual 3.0 way to write a nullable reference
        return {"anyOf": [{"type": "null"}, out]}
    return out
