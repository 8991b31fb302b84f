"""Routes imported from an OpenAPI 3.0/3.1 document: methods, paths, parameters and body schemas."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail_authz.payload.schema import DIALECT
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.openapi_doc import Loc, OpenApiDocument, at
from guardrail_authz.policy.openapi_inputs import LOCATIONS, Params, parameters, request_body
from guardrail_authz.policy.openapi_schema import SchemaConverter
from guardrail_authz.policy.pathtrie import TemplateError, parse_template
from guardrail_authz.policy.yamlsrc import line_of, load_documents, read_text

__all__ = ["LOCATIONS", "METHODS", "ImportedOperation", "load_openapi", "parse_openapi"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VERSION = re.compile(r"3\.[01]\.[0-9]+")
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})  # OpenAPI ignores these
_NAME_MAX = 63


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


_Found = tuple[ImportedOperation, Loc, Loc | None]  # an operation, where it is, its id


class _Importer:
    """Walks one document's paths and operations; schemas go through one converter."""

    def __init__(self, data: dict[str, Any], file: str, sink: ErrorSink) -> None:
        self.doc = OpenApiDocument(data, file, sink)
        self.schemas = SchemaConverter(self.doc)

    def run(self) -> list[ImportedOperation]:
        data = self.doc.data
        version = data.get("openapi")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            got = "nothing" if version is None else repr(version)
            msg = f"'openapi' must be a 3.0.x or 3.1.x version string, got {got}"
            self.doc.error("openapi.version", msg, ("openapi", line_of(data, "openapi")))
            return []
        self.schemas.v30 = version.startswith("3.0")
        dialect = data.get("jsonSchemaDialect")
        if dialect is not None and str(dialect).rstrip("#") != DIALECT:
            msg = f"only the JSON Schema 2020-12 dialect is supported ({DIALECT})"
            self.doc.error("openapi.dialect", msg, at(data, "jsonSchemaDialect", ""))
            return []
        paths = data.get("paths")
        if paths is None:
            return []
        if not isinstance(paths, dict):
            self.doc.error("openapi.field", "must be a mapping of paths", at(data, "paths", ""))
            return []
        found: list[_Found] = []
        for path, item in paths.items():
            found.extend(self.path_item(paths, str(path), item))
        self.check_names(found)
        return [op for op, _, _ in found]

    def path_item(self, paths: dict[str, Any], path: str, item: Any) -> list[_Found]:
        where = (f"paths.{path}", line_of(paths, path))
        if not path.startswith("/"):
            self.doc.error("openapi.path", f"path {path!r} must start with '/'", where)
            return []
        problem = _template_problem(path)
        if problem is not None:
            self.doc.error("openapi.path", f"unsupported path template: {problem}", where)
            return []
        resolved = self.doc.deref(item, where)
        if resolved is None:
            return []
        item, where = resolved
        if not isinstance(item, dict):
            self.doc.error("openapi.field", "must be a mapping (a path item)", where)
            return []
        shared = parameters(self.doc, item, where[0])
        out = []
        for method in [k for k in item if k in METHODS]:  # in document order
            op_where = (f"{where[0]}.{method}", line_of(item, method))
            if not isinstance(item[method], dict):
                self.doc.error("openapi.field", "must be a mapping (an operation)", op_where)
                continue
            out.append(self.operation(path, method, item[method], op_where, shared))
        return out

    def operation(
        self, path: str, method: str, op: dict[str, Any], where: Loc, shared: Params
    ) -> _Found:
        params = {**shared, **parameters(self.doc, op, where[0])}  # the operation's own win
        op_id = op.get("operationId")
        id_where = at(op, "operationId", where[0]) if "operationId" in op else None
        if id_where is not None and (not isinstance(op_id, str) or not op_id.strip()):
            self.doc.error("openapi.operation_id", "must be a non-empty string", id_where)
            op_id, id_where = None, None
        name = _slug(op_id) if isinstance(op_id, str) else ""
        name = name or _slug(f"{method}-{re.sub('[^a-z0-9]+', '-', path.lower()).strip('-')}")
        name = name if name != method else f"{method}-root"
        groups: dict[str, dict[str, tuple[Any, Loc]]] = {"query": {}, "header": {}, "path": {}}
        required: dict[str, list[str]] = {"query": [], "header": [], "path": []}
        for (pname, loc), (param, p_where) in params.items():
            if loc == "cookie" or (loc == "header" and pname in _IGNORED_HEADERS):
                continue
            if loc == "path" and "{" + pname + "}" not in path:
                msg = f"path parameter {pname!r} does not appear in {path!r}"
                self.doc.error("openapi.parameter", msg, p_where)
                continue
            # A `content` parameter is serialised (e.g. JSON in a query string): not typed here.
            schema = param.get("schema", True) if "content" not in param else True
            groups[loc][pname] = (schema, at(param, "schema", p_where[0]))
            if loc == "path" or param.get("required") is True:
                required[loc].append(pname)
        body, types, body_required = request_body(self.doc, self.schemas, op, where)
        schemas = {loc: self.schemas.group(props, required[loc]) for loc, props in groups.items()}
        imported = ImportedOperation(
            name, op_id if isinstance(op_id, str) else name, method.upper(), path, body, types,
            body_required, schemas["query"], schemas["header"], schemas["path"], where[1],
        )  # fmt: skip
        return imported, where, id_where

    def check_names(self, found: list[_Found]) -> None:
        ids: dict[str, Loc] = {}
        names: dict[str, ImportedOperation] = {}
        for op, where, id_where in found:
            if id_where is not None:
                if op.action in ids:
                    first = ids[op.action]
                    msg = f"duplicate operationId {op.action!r} (first at line {first[1]})"
                    self.doc.error("openapi.operation_id", msg, id_where)
                    continue
                ids[op.action] = id_where
            other = names.get(op.name)
            if other is not None:
                msg = (
                    f"{op.method} {op.path} gets route name {op.name!r}, like {other.method} "
                    f"{other.path} (line {other.line}); give them distinct operationIds"
                )
                self.doc.error("openapi.route_name", msg, where)
                continue
            names[op.name] = op


def _template_problem(path: str) -> str | None:
    if "*" in path:
        return f"'*' in {path!r} would be read as a wildcard"
    try:
        parse_template(path)
    except TemplateError as exc:
        return str(exc)
    return None


def _slug(text: str) -> str:
    """Lower-case, runs of other characters as '-', trimmed to a valid route name."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:_NAME_MAX].rstrip("-._")
