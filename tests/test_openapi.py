"""OpenAPI 3.0/3.1 import: operations, merged parameters, self-contained schemas, located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.payload.schema import Violation, coerce, compile_schema
from guardrail_authz.policy.errors import ErrorSink, PolicyError
from guardrail_authz.policy.openapi import (
    LOCATIONS,
    ImportedOperation,
    load_openapi,
    parse_openapi,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"


def load(name: str) -> tuple[dict[str, ImportedOperation], list[PolicyError]]:
    sink = ErrorSink()
    ops = load_openapi(FIXTURES / name, sink)
    return {op.name: op for op in ops}, sink.sorted()


@pytest.fixture(scope="module")
def orders() -> dict[str, ImportedOperation]:
    ops, errors = load("orders.openapi.yaml")
    assert errors == []
    return ops


def refs_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


def plain_only(value: Any) -> bool:
    if isinstance(value, dict):
        return type(value) is dict and all(plain_only(v) for v in value.values())
    if isinstance(value, list):
        return type(value) is list and all(plain_only(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_every_operation_is_imported_in_document_order(
    orders: dict[str, ImportedOperation],
) -> None:
    summary = [(op.name, op.action, op.method, op.path, op.line) for op in orders.values()]
    assert summary == [
        ("listorders", "listOrders", "GET", "/orders", 12),
        ("createorder", "createOrder", "POST", "/orders", 39),
        ("getorder", "getOrder", "GET", "/orders/{id}", 58),
        ("orders.update_v2", "orders.Update_v2", "PATCH", "/orders/{id}", 63),
        ("delete-orders-id", "delete-orders-id", "DELETE", "/orders/{id}", 88),
        ("createcategory", "createCategory", "POST", "/categories", 93),
    ]


def test_parameters_by_location_with_refs_and_ignored_ones(
    orders: dict[str, ImportedOperation],
) -> None:
    listing = orders["listorders"]
    assert listing.query_schema == {
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},  # x-internal dropped
            "status": {"type": "array", "items": {"$ref": "#/$defs/Status"}},
        },
        "$defs": {"Status": {"type": "string", "enum": ["pending", "shipped"]}},
    }
    # Names lower-cased; Accept is ignored as OpenAPI says, cookies are not checked.
    assert listing.header_schema == {
        "type": "object",
        "properties": {"x-tenant": {"type": "string", "pattern": "^[a-z0-9-]+$"}},
        "required": ["x-tenant"],
    }
    assert listing.path_schema is None
    assert listing.body_schema is None
    assert listing.content_types == ()


def test_path_level_parameters_merge_and_the_operation_wins(
    orders: dict[str, ImportedOperation],
) -> None:
    path_id = {
        "type": "object",
        "properties": {"id": {"type": "string", "format": "uuid"}},
        "required": ["id"],
    }
    for name in ("getorder", "orders.update_v2", "delete-orders-id"):
        assert orders[name].path_schema == path_id
    assert orders["getorder"].query_schema == {
        "type": "object",
        "properties": {"verbose": {"type": "boolean"}},
    }
    assert orders["orders.update_v2"].query_schema == {
        "type": "object",
        "properties": {"verbose": {"type": "integer", "minimum": 0, "maximum": 2}},
        "required": ["verbose"],
    }


def test_openapi_30_keywords_become_2020_12(orders: dict[str, ImportedOperation]) -> None:
    update = orders["orders.update_v2"]
    assert update.content_types == ("application/merge-patch+json",)
    assert update.body_required is True
    assert update.body_schema == {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"], "maxLength": 200},
            "quantity": {"type": "integer", "exclusiveMinimum": 0},
        },
    }
    compiled = compile_schema(update.body_schema, base="body")
    assert compiled.check({"note": None, "quantity": 1}) is None
    assert compiled.check({"quantity": 0}) == Violation(
        "body.quantity", "exclusiveMinimum", "body.quantity: must be greater than 0"
    )


def test_request_body_refs_are_bundled_into_defs(orders: dict[str, ImportedOperation]) -> None:
    create = orders["createorder"]
    assert create.body_required is True  # from #/components/requestBodies/NewOrder
    assert create.content_types == ("application/json",)
    schema = create.body_schema
    assert schema is not None
    assert schema["$ref"] == "#/$defs/NewOrder"
    # Only what NewOrder needs, transitively; no ref leaves the schema.
    assert sorted(schema["$defs"]) == ["Address", "Line", "Money", "NewOrder"]
    assert all(ref.startswith("#/$defs/") for ref in refs_in(schema))
    new_order = schema["$defs"]["NewOrder"]
    assert new_order["required"] == ["items"]  # `id` is readOnly: never sent in a request
    assert "x-owner" not in new_order  # extensions dropped...
    assert "x-trace" in new_order["properties"]  # ...but a property may be named x-anything
    assert new_order["properties"]["note"] == {"type": ["string", "null"]}  # example dropped
    assert new_order["properties"]["shipTo"] == {
        "anyOf": [{"type": "null"}, {"allOf": [{"$ref": "#/$defs/Address"}]}]
    }
    assert plain_only(schema)  # no YAML containers (with line numbers) left


def test_an_imported_body_validates_requests(orders: dict[str, ImportedOperation]) -> None:
    schema = orders["createorder"].body_schema
    assert schema is not None
    compiled = compile_schema(schema, base="body")
    line = {"sku": "A-1", "quantity": 2, "price": {"amount": 9.5, "currency": "EUR"}}
    assert compiled.check({"items": [line], "shipTo": None, "note": None}) is None
    assert compiled.check({"items": [line], "shipTo": {"city": "Oslo"}}) is None
    too_many = compiled.check({"items": [line, {**line, "quantity": 5000}]})
    assert too_many == Violation(
        "body.items[1].quantity", "maximum", "body.items[1].quantity: must be at most 1000"
    )
    currency = compiled.check({"items": [{**line, "price": {"amount": 1, "currency": "eur"}}]})
    assert currency is not None
    assert currency.field == "body.items[0].price.currency"
    no_city = compiled.check({"items": [line], "shipTo": {}})
    assert no_city is not None
    assert (no_city.field, no_city.rule) == ("body.shipTo.city", "required")
    strict = compile_schema(schema, base="body", strict=True)
    extra = strict.check({"items": [{**line, "discount": 50}]})
    assert extra is not None
    assert (extra.field, extra.rule) == ("body.items[0].discount", "additionalProperties")


def test_a_recursive_schema_works(orders: dict[str, ImportedOperation]) -> None:
    category = orders["createcategory"]
    # The JSON media type wins over XML; media type parameters are dropped.
    assert category.content_types == ("application/xml", "application/json")
    assert category.body_required is False
    schema = category.body_schema
    assert schema is not None
    assert schema["$defs"]["Category"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Category"
    }
    compiled = compile_schema(schema, base="body", strict=True)
    tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert compiled.check(tree) is None
    broken = {"name": "a", "children": [{"name": "b", "children": [{"name": ""}]}]}
    assert compiled.check(broken) == Violation(
        "body.children[0].children[0].name",
        "minLength",
        "body.children[0].children[0].name: must be at least 1 character",
    )


def test_openapi_31_json_document() -> None:
    ops, errors = load("inventory.openapi.json")
    assert errors == []
    assert [(op.name, op.method, op.path, op.line) for op in ops.values()] == [
        ("listitems", "GET", "/items", 44),  # via #/components/pathItems/Items
        ("trace-items", "TRACE", "/items", 46),
        ("setstock", "PUT", "/items/{sku}/stock", 10),
    ]  # webhooks are not routes
    stock = ops["setstock"]
    assert stock.content_types == ("application/vnd.inventory+json",)
    body = stock.body_schema
    assert body is not None
    assert body["properties"]["count"] == {
        "type": "integer",
        "exclusiveMinimum": 0,
        "maximum": 100000,
    }
    assert body["properties"]["reason"] == {"type": ["string", "null"], "maxLength": 80}
    assert body["properties"]["location"] == {"$ref": "#/$defs/Location", "description": "where"}
    compiled = compile_schema(body, base="body")
    assert compiled.check({"count": 3, "kind": "absolute", "location": {"aisle": 2}}) is None
    assert compiled.check({"count": 3, "location": {"aisle": 0}}) == Violation(
        "body.location.aisle", "minimum", "body.location.aisle: must be at least 1"
    )
    query = stock.query_schema
    assert query is not None
    values = coerce({"dryRun": ["true"], "tags": ["1,2"]}, query)
    assert values == {"dryRun": True, "tags": [1, 2]}
    assert compile_schema(query, base="query").check(values) is None
    path = stock.path_schema
    assert path is not None
    assert compile_schema(path, base="body").check({"sku": "ab"}) is not None


def test_json_that_yaml_cannot_read_still_imports() -> None:
    text = r'{"openapi": "3.1.0", "paths": {"\/v1\/items": {"get": {"operationId": "list\/all"}}}}'
    sink = ErrorSink()
    ops = parse_openapi(text, "api.json", sink)  # YAML has no '\/' escape; JSON does
    assert not sink
    assert [(op.name, op.action, op.path) for op in ops] == [("list-all", "list/all", "/v1/items")]


INVALID = [
    ("version.yaml", "openapi.version", 1, "openapi"),
    ("dialect.yaml", "openapi.dialect", 3, "jsonSchemaDialect"),
    ("document.yaml", "openapi.document", 1, ""),
    ("syntax.yaml", "openapi.syntax", 4, ""),
    ("duplicate_key.yaml", "openapi.duplicate_key", 7, "operationId"),
    ("field.yaml", "openapi.field", 5, "paths./orders.get"),
    ("path.yaml", "openapi.path", 4, "paths./files/{name}.{ext}"),
    ("parameter.yaml", "openapi.parameter", 9, "paths./orders.post.parameters[0].in"),
    ("path_parameter.yaml", "openapi.parameter", 11, "paths./orders/{id}.get.parameters[1]"),
    ("request_body.yaml", "openapi.request_body", 7, "paths./orders.post.requestBody"),
    (
        "ref_external.yaml",
        "openapi.ref",
        11,
        "paths./orders.post.requestBody.content.application/json.schema.$ref",
    ),
    ("ref_remote_parameter.yaml", "openapi.ref", 8, "paths./orders.get.parameters[0].$ref"),
    (
        "ref_unresolved.yaml",
        "openapi.ref",
        14,
        "paths./orders.post.requestBody.content.application/json.schema.properties.customer.$ref",
    ),
    ("ref_cycle.yaml", "openapi.ref_cycle", 14, "components.parameters.B.$ref"),
    ("operation_id.yaml", "openapi.operation_id", 9, "paths./orders/archive.get.operationId"),
    ("route_name.yaml", "openapi.route_name", 8, "paths./orders/{id}/v2.get"),
    ("schema.yaml", "openapi.schema", 19, "components.schemas.Order.properties.note.minLength"),
    ("schema_pattern.yaml", "openapi.schema", 12, "paths./orders.get.parameters[0].schema.pattern"),
]


@pytest.mark.parametrize(("name", "code", "line", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_documents_report_file_line_and_field(
    name: str, code: str, line: int, field: str
) -> None:
    _, errors = load(f"invalid/{name}")
    assert [(e.code, e.file, e.line, e.field) for e in errors] == [(code, name, line, field)]


def test_every_invalid_fixture_is_covered() -> None:
    on_disk = sorted(p.name for p in (FIXTURES / "invalid").iterdir())
    assert on_disk == sorted(i[0] for i in INVALID)


def test_error_messages_say_what_is_wrong() -> None:
    _, errors = load("invalid/ref_cycle.yaml")
    assert "#/components/parameters/A -> #/components/parameters/B" in errors[0].message
    _, errors = load("invalid/operation_id.yaml")
    assert errors[0].message == "duplicate operationId 'listOrders' (first at line 6)"
    _, errors = load("invalid/ref_external.yaml")
    assert "common.yaml" in errors[0].message


def test_a_missing_file_and_a_display_name() -> None:
    sink = ErrorSink()
    assert load_openapi(FIXTURES / "missing.yaml", sink, display="policies/missing.yaml") == []
    assert [(e.code, e.file) for e in sink.errors] == [("openapi.read", "policies/missing.yaml")]


def test_more_than_one_document_is_refused() -> None:
    sink = ErrorSink()
    assert parse_openapi("openapi: 3.0.3\n---\nopenapi: 3.1.0\n", "two.yaml", sink) == []
    assert [(e.code, e.line) for e in sink.errors] == [("openapi.document", 3)]


def test_media_types_must_be_type_and_subtype() -> None:
    text = """openapi: 3.0.3
paths:
  /upload:
    post:
      requestBody:
        content:
          Application/JSON; charset=UTF-8: {}
          text: {}
          application/json: {}
"""
    sink = ErrorSink()
    [op] = parse_openapi(text, "upload.yaml", sink)
    assert op.content_types == ("application/json",)
    assert [(e.code, e.line, e.field) for e in sink.errors] == [
        ("openapi.request_body", 8, "paths./upload.post.requestBody.content.text")
    ]


def test_a_document_without_paths_has_no_operations() -> None:
    sink = ErrorSink()
    assert parse_openapi("openapi: 3.1.0\nwebhooks: {}\n", "hooks.yaml", sink) == []
    assert not sink


_REFS = st.sampled_from(
    ["#/components/schemas/S", "#/components/schemas/T/properties/a", "#/components/schemas/X",
     "#/components/parameters/P", "#/components/requestBodies/B", "x.yaml#/S", "#/paths"]
)  # fmt: skip
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["string", "a"]))
_SCHEMA_KEYS = st.sampled_from(
    ["properties", "items", "allOf", "anyOf", "type", "nullable", "required", "minimum",
     "exclusiveMinimum", "readOnly", "x-a", "example", "enum", "additionalProperties"]
)  # fmt: skip
_SCHEMAS = st.recursive(
    st.sampled_from([{}, True, {"type": "string"}, {"type": "integer"}, {"nullable": True}])
    | st.builds(lambda r: {"$ref": r}, _REFS),
    lambda inner: st.dictionaries(
        _SCHEMA_KEYS,
        inner
        | _SCALARS
        | st.lists(inner | _SCALARS, max_size=2)
        | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
        max_size=4,
    ),
    max_leaves=12,
)
_PARAMS = st.fixed_dictionaries(
    {"name": st.sampled_from(["id", "q", "X-Q"]), "in": st.sampled_from((*LOCATIONS, "body"))},
    optional={"schema": _SCHEMAS, "required": st.booleans(), "$ref": _REFS},
)
_BODIES = st.fixed_dictionaries(
    {"content": st.dictionaries(
        st.sampled_from(["application/json", "text/plain", "application/a+json"]),
        st.fixed_dictionaries({}, optional={"schema": _SCHEMAS}), max_size=2)},
    optional={"required": st.booleans() | _SCALARS, "$ref": _REFS},
)  # fmt: skip
_OPERATIONS = st.fixed_dictionaries(
    {},
    optional={
        "operationId": st.sampled_from(["a", "A", "b", 3, ""]),
        "parameters": st.lists(_PARAMS, max_size=3),
        "requestBody": _BODIES,
    },
)
_ITEMS = st.dictionaries(st.sampled_from(["get", "post", "parameters"]), _OPERATIONS, max_size=2)
_PATHS = st.dictionaries(st.sampled_from(["/a", "/b/{id}", "/c", "d"]), _ITEMS, max_size=3)
_COMPONENTS = st.fixed_dictionaries(
    {},
    optional={
        "schemas": st.dictionaries(st.sampled_from(["S", "T"]), _SCHEMAS, max_size=2),
        "parameters": st.dictionaries(
            st.just("P"), _PARAMS | st.builds(lambda r: {"$ref": r}, _REFS)
        ),
        "requestBodies": st.dictionaries(st.just("B"), _BODIES),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=_PATHS, components=_COMPONENTS, version=st.sampled_from(["3.0.3", "3.1.0"]))
def test_arbitrary_documents_never_crash_the_importer(
    paths: dict[str, Any], components: dict[str, Any], version: str
) -> None:
    text = json.dumps({"openapi": version, "paths": paths, "components": components})
    sink = ErrorSink()
    ops = parse_openapi(text, "fuzz.json", sink)
    assert all(e.code.startswith("openapi.") for e in sink.errors)
    for op in ops:
        for schema in (op.body_schema, op.query_schema, op.header_schema, op.path_schema):
            if schema is not None:
                json.dumps(schema)
            if schema is not None and not sink:  # a clean import: self-contained, compiles
                assert all(ref.startswith("#/$defs/") for ref in refs_in(schema))
                compile_schema(schema, base="body", strict=True)
