"""Routes imported from an OpenAPI 3.0/3.1 document: methods, paths, parameters and body schemas."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from guardrail_authz.payload.schema import (
    DIALECT,
    SchemaError,
    compile_schema,
    map_subschemas,
    plain,
    resolve_pointer,
)
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.pathtrie import TemplateError, parse_template
from guardrail_authz.policy.yamlsrc import line_of, load_documents, read_text

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
LOCATIONS = ("query", "header", "path", "cookie")
_VERSION = re.compile(r"3\.[01]\.[0-9]+")
_COMPONENT = "#/components/schemas/"
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})  # OpenAPI ignores these
# OpenAPI-only annotations and what would change how refs resolve; `x-` keys go too.
_DROPPED = frozenset({"example", "discriminator", "xml", "externalDocs", "$schema", "$id"})
_NAME_MAX = 63
_TCHARS = r"[a-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA = re.compile(rf"{_TCHARS}/{_TCHARS}")

_Loc = tuple[str, int]  # (field, line)


@dataclass(frozen=True, slots=True)
class ImportedOperation:
    """One operation of the document, ready to become a route."""

    name: str  # operationId sanitised to [a-z0-9._-], else "<method>-<path slug>"
    action: str  # operationId as written, else the same as name
    method: str  # upper-case
    path: str  # OpenAPI path template, e.g. "/orders/{id}"
    body_schema: dict[str, Any] | None  # JSON request body schema, self-contained ($defs)
    content_types: tuple[str, ...]  # requestBody media types: lower-case type/subtype, no params
    body_required: bool
    query_schema: dict[str, Any] | None  # {"type": "object", "properties": ..., "required": ...}
    header_schema: dict[str, Any] | None  # same, header names lower-case
    path_schema: dict[str, Any] | None
    line: int  # line of the operation in the document


def load_openapi(
    path: Path, sink: ErrorSink, *, display: str | None = None
) -> list[ImportedOperation]:
    """Import the operations of an OpenAPI 3.0/3.1 document (YAML or JSON); errors go to sink."""
    file = display or path.name
    scratch = ErrorSink()
    text = read_text(path, file, scratch)
    _forward(scratch, sink)
    return [] if text is None else parse_openapi(text, file, sink)


def parse_openapi(text: str, file: str, sink: ErrorSink) -> list[ImportedOperation]:
    """Import the operations of a document given as text; `file` names it in errors."""
    scratch = ErrorSink()
    docs = load_documents(text, file, scratch)
    if any(e.code == "yaml.syntax" for e in scratch.errors) and text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):  # JSON that YAML cannot read (e.g. '\/'): no lines
            docs, scratch = [(json.loads(text), 1)], ErrorSink()
    _forward(scratch, sink)
    if any(e.code == "yaml.syntax" for e in scratch.errors):
        return []
    if len(docs) != 1 or not isinstance(docs[0][0], dict):
        line = docs[1][1] if len(docs) > 1 else docs[0][1] if docs else 0
        sink.add("openapi.document", "must hold one OpenAPI document (a mapping)", file, line)
        return []
    return _Importer(docs[0][0], file, sink).run()


def _forward(scratch: ErrorSink, sink: ErrorSink) -> None:
    """Reading errors under openapi.* codes; non-string keys (e.g. `200:`) are read as strings."""
    for e in scratch.errors:
        if e.code != "yaml.key":
            sink.add("openapi." + e.code.split(".", 1)[-1], e.message, e.file, e.line, e.field)


_Found = tuple[ImportedOperation, _Loc, _Loc | None]  # an operation, where it is, its id


class _Importer:
    """Walks one document; converts schemas to 2020-12 and collects errors (once each)."""

    def __init__(self, doc: dict[str, Any], file: str, sink: ErrorSink) -> None:
        self.doc = doc
        self.file = file
        self.sink = sink
        self.v30 = False
        self.components: dict[str, tuple[Any, set[str]]] = {}
        self.reported: set[tuple[str, int, str]] = set()
        self.validated: set[str] = set()

    def error(self, code: str, message: str, where: _Loc) -> None:
        if (code, where[1], where[0]) not in self.reported:
            self.reported.add((code, where[1], where[0]))
            self.sink.add(code, message, self.file, where[1], where[0])

    def run(self) -> list[ImportedOperation]:
        version = self.doc.get("openapi")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            got = "nothing" if version is None else repr(version)
            msg = f"'openapi' must be a 3.0.x or 3.1.x version string, got {got}"
            self.error("openapi.version", msg, ("openapi", line_of(self.doc, "openapi")))
            return []
        self.v30 = version.startswith("3.0")
        dialect = self.doc.get("jsonSchemaDialect")
        if dialect is not None and str(dialect).rstrip("#") != DIALECT:
            msg = f"only the JSON Schema 2020-12 dialect is supported ({DIALECT})"
            self.error("openapi.dialect", msg, _at(self.doc, "jsonSchemaDialect", ""))
            return []
        paths = self.doc.get("paths")
        if paths is None:
            return []
        if not isinstance(paths, dict):
            self.error("openapi.field", "must be a mapping of paths", _at(self.doc, "paths", ""))
            return []
        found: list[_Found] = []
        for path, item in paths.items():
            found.extend(self.path_item(paths, str(path), item))
        self.check_names(found)
        return [op for op, _, _ in found]

    def path_item(self, paths: dict[str, Any], path: str, item: Any) -> list[_Found]:
        where = (f"paths.{path}", line_of(paths, path))
        if not path.startswith("/"):
            self.error("openapi.path", f"path {path!r} must start with '/'", where)
            return []
        problem = _template_problem(path)
        if problem is not None:
            self.error("openapi.path", f"unsupported path template: {problem}", where)
            return []
        resolved = self.deref(item, where)
        if resolved is None:
            return []
        item, where = resolved
        if not isinstance(item, dict):
            self.error("openapi.field", "must be a mapping (a path item)", where)
            return []
        shared = self.parameters(item, where[0])
        out = []
        for method in [k for k in item if k in METHODS]:  # in document order
            op_where = (f"{where[0]}.{method}", line_of(item, method))
            if not isinstance(item[method], dict):
                self.error("openapi.field", "must be a mapping (an operation)", op_where)
                continue
            out.append(self.operation(path, method, item[method], op_where, shared))
        return out

    def operation(
        self,
        path: str,
        method: str,
        op: dict[str, Any],
        where: _Loc,
        shared: dict[tuple[str, str], tuple[dict[str, Any], _Loc]],
    ) -> _Found:
        params = {**shared, **self.parameters(op, where[0])}  # the operation's own win
        op_id = op.get("operationId")
        id_where = _at(op, "operationId", where[0]) if "operationId" in op else None
        if id_where is not None and (not isinstance(op_id, str) or not op_id.strip()):
            self.error("openapi.operation_id", "must be a non-empty string", id_where)
            op_id, id_where = None, None
        name = _slug(op_id) if isinstance(op_id, str) else ""
        name = name or _slug(f"{method}-{re.sub('[^a-z0-9]+', '-', path.lower()).strip('-')}")
        name = name if name != method else f"{method}-root"
        groups: dict[str, dict[str, tuple[Any, _Loc]]] = {"query": {}, "header": {}, "path": {}}
        required: dict[str, list[str]] = {"query": [], "header": [], "path": []}
        for (pname, loc), (param, p_where) in params.items():
            if loc == "cookie" or (loc == "header" and pname in _IGNORED_HEADERS):
                continue
            if loc == "path" and "{" + pname + "}" not in path:
                msg = f"path parameter {pname!r} does not appear in {path!r}"
                self.error("openapi.parameter", msg, p_where)
                continue
            # A `content` parameter is serialised (e.g. JSON in a query string): not typed here.
            schema = param.get("schema", True) if "content" not in param else True
            groups[loc][pname] = (schema, _at(param, "schema", p_where[0]))
            if loc == "path" or param.get("required") is True:
                required[loc].append(pname)
        body, types, body_required = self.request_body(op, where)
        schemas = {loc: self.group(props, required[loc]) for loc, props in groups.items()}
        imported = ImportedOperation(
            name, op_id if isinstance(op_id, str) else name, method.upper(), path, body, types,
            body_required, schemas["query"], schemas["header"], schemas["path"], where[1],
        )  # fmt: skip
        return imported, where, id_where

    def parameters(
        self, container: dict[str, Any], field: str
    ) -> dict[tuple[str, str], tuple[dict[str, Any], _Loc]]:
        raw = container.get("parameters")
        if raw is None:
            return {}
        if not isinstance(raw, list):
            self.error("openapi.field", "must be a list", _at(container, "parameters", field))
            return {}
        out: dict[tuple[str, str], tuple[dict[str, Any], _Loc]] = {}
        for i, item in enumerate(raw):
            item_where = (f"{field}.parameters[{i}]", line_of(raw, i))
            resolved = self.deref(item, item_where)
            if resolved is None:
                continue
            param, p_where = resolved
            if not isinstance(param, dict):
                self.error("openapi.parameter", "must be a mapping (a parameter)", p_where)
                continue
            name, loc = param.get("name"), param.get("in")
            if not isinstance(name, str) or not name:
                self.error("openapi.parameter", "needs a 'name'", p_where)
                continue
            if loc not in LOCATIONS:
                msg = f"'in' must be one of {', '.join(LOCATIONS)}"
                self.error("openapi.parameter", msg, _at(param, "in", p_where[0]))
                continue
            key = (name.lower() if loc == "header" else name, str(loc))
            if key in out:
                self.error("openapi.parameter", f"duplicate {loc} parameter {name!r}", item_where)
                continue
            out[key] = (param, p_where)
        return out

    def request_body(
        self, op: dict[str, Any], where: _Loc
    ) -> tuple[dict[str, Any] | None, tuple[str, ...], bool]:
        if "requestBody" not in op:
            return None, (), False
        resolved = self.deref(op["requestBody"], _at(op, "requestBody", where[0]))
        if resolved is None:
            return None, (), False
        body, b_where = resolved
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(content, dict) or not content:
            msg = "needs 'content': a mapping of media types to schemas"
            self.error("openapi.request_body", msg, b_where)
            return None, (), False
        required = body.get("required", False)
        if not isinstance(required, bool):
            self.error("openapi.field", "must be true or false", _at(body, "required", b_where[0]))
        types: list[str] = []
        for key in content:
            media_type = str(key).split(";", 1)[0].strip().lower()
            if not _MEDIA.fullmatch(media_type):
                msg = f"{key!r} is not a media type like application/json"
                self.error("openapi.request_body", msg, _at(content, key, f"{b_where[0]}.content"))
            elif media_type not in types:
                types.append(media_type)
        json_types = [k for k in content if _is_json(str(k))]
        json_types.sort(key=lambda k: str(k).split(";")[0].strip().lower() != "application/json")
        schema: dict[str, Any] | None = None
        if json_types:
            media_where = _at(content, json_types[0], f"{b_where[0]}.content")
            media = content[json_types[0]]
            if not isinstance(media, dict):
                self.error("openapi.field", "must be a mapping (a media type)", media_where)
            elif "schema" in media:
                s_where = _at(media, "schema", media_where[0])
                bundle = _Bundle(self)
                schema = bundle.finish(bundle.convert(media["schema"], s_where))
                self.validate(schema, {(): (media["schema"], s_where)})
        return schema, tuple(types), required is True

    def group(
        self, props: dict[str, tuple[Any, _Loc]], required: list[str]
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
                node = self.schemas()[str(path[1])]
                where = (f"components.schemas.{path[1]}", self.component_line(str(path[1])))
                path = path[2:]
            else:
                prefix = next((p for p in roots if path[: len(p)] == p), None)
                if prefix is None:
                    prefix = next(iter(roots))
                node, where = roots[prefix]
                path = path[len(prefix) :]
            self.error("openapi.schema", exc.reason, _descend(node, path, where))

    def component(self, name: str) -> tuple[Any, set[str]]:
        """A component schema converted once: its 2020-12 form and the components it names."""
        if name not in self.components:
            deps: set[str] = set()
            self.components[name] = ({}, deps)  # reserved while converting
            node = self.schemas()[name]
            where = (f"components.schemas.{name}", self.component_line(name))
            self.components[name] = (self.convert(node, where, deps), deps)
        return self.components[name]

    def component_line(self, name: str) -> int:
        return line_of(self.schemas(), name)

    def schemas(self) -> dict[str, Any]:
        components = self.doc.get("components")
        found = components.get("schemas") if isinstance(components, dict) else None
        return found if isinstance(found, dict) else {}

    def convert(self, node: Any, where: _Loc, deps: set[str]) -> Any:
        """One schema in the 2020-12 dialect; `$ref`s to components become `#/$defs/<name>`."""
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            self.error("openapi.schema", "must be a schema (a mapping)", where)
            return {}

        def sub(w: tuple[str | int, ...], value: Any) -> Any:
            return self.convert(value, _descend(node, w, where), deps)

        out = map_subschemas(node, sub)
        for key in [k for k in out if k.startswith("x-") or k in _DROPPED]:
            del out[key]
        if "$ref" in node:
            ref = self.schema_ref(node["$ref"], _at(node, "$ref", where[0]), deps)
            if ref is None:
                del out["$ref"]
            else:
                out["$ref"] = ref
        props = node.get("properties")
        if isinstance(out.get("required"), list) and isinstance(props, dict):
            # readOnly properties are not sent in requests, so they cannot be required there.
            out["required"] = [r for r in out["required"] if not self.read_only(props.get(r))]
        return _from_30(out) if self.v30 else out

    def schema_ref(self, ref: Any, where: _Loc, deps: set[str]) -> str | None:
        if not isinstance(ref, str):
            self.error("openapi.ref", "must be a string", where)
            return None
        if not ref.startswith("#"):
            msg = f"external reference {ref!r}: only local references (#/components/...) are read"
            self.error("openapi.ref", msg, where)
            return None
        if not ref.startswith(_COMPONENT):
            msg = f"schema reference {ref!r} must point into #/components/schemas"
            self.error("openapi.ref", msg, where)
            return None
        escaped, _, tail = ref[len(_COMPONENT) :].partition("/")
        if _unescape(escaped) not in self.schemas() or resolve_pointer(self.doc, ref) is None:
            self.error("openapi.ref", f"{ref!r} does not resolve in this document", where)
            return None
        deps.add(_unescape(escaped))
        return f"#/$defs/{escaped}" + (f"/{tail}" if tail else "")

    def read_only(self, prop: Any) -> bool:
        for _ in range(8):
            if not isinstance(prop, dict):
                return False
            if prop.get("readOnly") is True:
                return True
            ref = prop.get("$ref")
            prop = resolve_pointer(self.doc, ref) if isinstance(ref, str) else None
        return False

    def deref(self, node: Any, where: _Loc) -> tuple[Any, _Loc] | None:
        """Follow local `$ref`s (parameters, request bodies, path items); None after an error."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            ref, ref_where = node["$ref"], _at(node, "$ref", where[0])
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

    def locate(self, ref: str) -> tuple[Any, _Loc] | None:
        node: Any = self.doc
        where: _Loc = ("", 0)
        for part in (_unescape(p) for p in ref[2:].split("/")):
            if not isinstance(node, dict) or part not in node:
                return None
            where = _at(node, part, where[0])
            node = node[part]
        return node, where

    def check_names(self, found: list[_Found]) -> None:
        ids: dict[str, _Loc] = {}
        names: dict[str, ImportedOperation] = {}
        for op, where, id_where in found:
            if id_where is not None:
                if op.action in ids:
                    first = ids[op.action]
                    msg = f"duplicate operationId {op.action!r} (first at line {first[1]})"
                    self.error("openapi.operation_id", msg, id_where)
                    continue
                ids[op.action] = id_where
            other = names.get(op.name)
            if other is not None:
                msg = (
                    f"{op.method} {op.path} gets route name {op.name!r}, like {other.method} "
                    f"{other.path} (line {other.line}); give them distinct operationIds"
                )
                self.error("openapi.route_name", msg, where)
                continue
            names[op.name] = op


class _Bundle:
    """Collects the component schemas one schema needs into its `$defs`."""

    def __init__(self, importer: _Importer) -> None:
        self.importer = importer
        self.defs: dict[str, Any] = {}

    def convert(self, node: Any, where: _Loc) -> Any:
        deps: set[str] = set()
        out = self.importer.convert(node, where, deps)
        self.include(deps)
        return out

    def include(self, names: set[str]) -> None:
        for name in sorted(names):
            if name not in self.defs:
                converted, deps = self.importer.component(name)
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


def _template_problem(path: str) -> str | None:
    if "*" in path:
        return f"'*' in {path!r} would be read as a wildcard"
    try:
        parse_template(path)
    except TemplateError as exc:
        return str(exc)
    return None


def _is_json(media: str) -> bool:
    base = media.split(";", 1)[0].strip().lower()
    return base == "application/json" or (
        base.startswith("application/") and base.endswith("+json")
    )


def _slug(text: str) -> str:
    """Lower-case, runs of other characters as '-', trimmed to a valid route name."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:_NAME_MAX].rstrip("-._")


def _unescape(part: str) -> str:
    """One JSON-pointer segment of a URI fragment, decoded."""
    return unquote(part).replace("~1", "/").replace("~0", "~")


def _at(container: Any, key: str | int, field: str) -> _Loc:
    """_Loc a key of a mapping (or item of a list) is: dotted field and line."""
    sub = f"{field}[{key}]" if isinstance(key, int) else f"{field}.{key}" if field else key
    return sub, line_of(container, key)


def _descend(node: Any, path: tuple[str | int, ...], where: _Loc) -> _Loc:
    """Follow a path into the document as far as it exists; the deepest location found."""
    for part in path:
        key: str | int
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key = part
        elif isinstance(node, dict) and str(part) in node:
            key = str(part)
        else:
            break
        field, line = _at(node, key, where[0])
        where = (field, line or where[1])
        node = node[key]
    return where
