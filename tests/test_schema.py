"""JSON Schema checks: field, keyword and a message without the value; strict mode; coercion."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail_authz.payload.schema import (
    SchemaError,
    Violation,
    coerce,
    compile_schema,
    field_path,
    map_subschemas,
)

SECRET = "ZQX-secret-7731"  # a value that must never appear in a violation

ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["item", "quantity"],
    "properties": {
        "item": {"type": "string", "minLength": 2, "maxLength": 100},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
        "price": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1000},
        "color": {"enum": ["red", "blue"]},
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "items": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
        },
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "geo": {"type": "object"}},
        },
    },
}


def check(instance: object, schema: dict[str, Any] = ORDER, **kw: Any) -> Violation | None:
    return compile_schema(schema, base="body", **kw).check(instance)


def test_a_valid_instance_has_no_violation() -> None:
    assert check({"item": "widget", "quantity": 3, "color": "red", "sku": "ABC-1234"}) is None


@pytest.mark.parametrize(
    ("instance", "field", "rule", "message"),
    [
        ({"item": "widget"}, "body.quantity", "required", "body.quantity: is required"),
        (
            {"item": "ok", "quantity": 1, "items": [{"name": "a"}, {}]},
            "body.items[1].name",
            "required",
            "body.items[1].name: is required",
        ),
        (
            {"item": "widget", "quantity": "3"},
            "body.quantity",
            "type",
            "body.quantity: must be an integer",
        ),
        ([], "body", "type", "body: must be an object"),
        (
            {"item": "w", "quantity": 1},
            "body.item",
            "minLength",
            "body.item: must be at least 2 characters",
        ),
        (
            {"item": "w" * 101, "quantity": 1},
            "body.item",
            "maxLength",
            "body.item: must be at most 100 characters",
        ),
        (
            {"item": "ok", "quantity": 0},
            "body.quantity",
            "minimum",
            "body.quantity: must be at least 1",
        ),
        (
            {"item": "ok", "quantity": 101},
            "body.quantity",
            "maximum",
            "body.quantity: must be at most 100",
        ),
        (
            {"item": "ok", "quantity": 1, "price": 0},
            "body.price",
            "exclusiveMinimum",
            "body.price: must be greater than 0",
        ),
        (
            {"item": "ok", "quantity": 1, "color": "green"},
            "body.color",
            "enum",
            'body.color: must be one of "red", "blue"',
        ),
        (
            {"item": "ok", "quantity": 1, "sku": "abc-1"},
            "body.sku",
            "pattern",
            "body.sku: does not match the required pattern",
        ),
        (
            {"item": "ok", "quantity": 1, "items": [{"name": "a"}] * 4},
            "body.items",
            "maxItems",
            "body.items: must have at most 3 items",
        ),
    ],
)
def test_violations_name_field_rule_and_a_short_message(
    instance: object, field: str, rule: str, message: str
) -> None:
    assert check(instance) == Violation(field, rule, message)


def test_extra_properties_pass_unless_the_schema_or_strict_mode_forbids_them() -> None:
    order = {"item": "ok", "quantity": 1, "colour": "red", "address": {"zip": "1"}}
    assert check(order) is None
    closed = {**ORDER, "additionalProperties": False}
    assert check(order, closed) == Violation(
        "body.colour", "additionalProperties", "body.colour: property not allowed"
    )
    assert check({"item": "ok", "quantity": 1, "colour": "red"}, strict=True) == Violation(
        "body.colour", "additionalProperties", "body.colour: property not allowed"
    )


def test_strict_mode_closes_nested_objects_and_arrays_of_objects() -> None:
    base = {"item": "ok", "quantity": 1}
    nested = check({**base, "address": {"city": "x", "zip": "1"}}, strict=True)
    assert nested is not None
    assert (nested.field, nested.rule) == ("body.address.zip", "additionalProperties")
    in_array = check({**base, "items": [{"name": "a"}, {"name": "b", "qty": 2}]}, strict=True)
    assert in_array is not None
    assert in_array.field == "body.items[1].qty"
    # `geo` lists no properties: strict mode leaves free-form objects alone.
    assert check({**base, "address": {"geo": {"lat": 1, "lon": 2}}}, strict=True) is None


def test_strict_mode_respects_what_the_schema_says_about_extra_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": {"type": "integer"},
        "$defs": {"Open": {"type": "object", "properties": {}, "additionalProperties": True}},
    }
    assert check({"a": "x", "b": 1}, schema, strict=True) is None
    bad = check({"a": "x", "b": "y"}, schema, strict=True)
    assert bad is not None
    assert (bad.field, bad.rule) == ("body.b", "type")


def test_strict_mode_closes_defs_and_refs_and_survives_recursion() -> None:
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    }
    ok = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert check(ok, tree, strict=True) is None
    deep = {"name": "a", "children": [{"name": "b", "children": [{"name": "c", "x": 1}]}]}
    violation = check(deep, tree, strict=True)
    assert violation is not None
    assert violation.field == "body.children[0].children[0].x"
    missing = check({"name": "a", "children": [{"children": []}]}, tree, strict=True)
    assert missing is not None
    assert (missing.field, missing.rule) == ("body.children[0].name", "required")


def test_strict_mode_allof_composition_accepts_the_union_of_branch_properties() -> None:
    """Closing each allOf branch would reject everything; the composed node is closed instead."""
    schema = {
        "$defs": {
            "Base": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}},
            },
            "Extended": {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    {
                        "properties": {
                            "extra": {"type": "integer"},
                            "tags": {"type": "object", "properties": {"a": {}}},
                        }
                    },
                ]
            },
        },
        "type": "object",
        "properties": {
            "base": {"$ref": "#/$defs/Base"},
            "ext": {"$ref": "#/$defs/Extended"},
            "maybe": {"anyOf": [{"$ref": "#/$defs/Base"}, {"type": "null"}]},
        },
    }
    assert check({"ext": {"id": "1", "extra": 2}, "maybe": None}, schema, strict=True) is None
    assert check({"maybe": {"id": "1"}}, schema, strict=True) is None
    cases = {
        "body.ext.unknown": {"ext": {"id": "1", "unknown": 1}},
        "body.ext.tags.b": {"ext": {"id": "1", "tags": {"a": 1, "b": 2}}},
        "body.base.extra": {"base": {"id": "1", "extra": 2}},  # Base alone stays closed
        "body.maybe.extra": {"maybe": {"id": "1", "extra": 2}},
    }
    for field, instance in cases.items():
        violation = check(instance, schema, strict=True)
        assert violation is not None, field
        assert violation.field == field
        assert violation.rule in ("additionalProperties", "unevaluatedProperties")
    # Non-strict, the same schema lets extra properties through.
    assert check(cases["body.ext.unknown"], schema) is None


def test_strict_mode_ref_next_to_properties_is_a_composition_too() -> None:
    schema = {
        "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}},
        "$ref": "#/$defs/Base",
        "properties": {"extra": {"type": "integer"}},
    }
    assert check({"id": "1", "extra": 2}, schema, strict=True) is None
    violation = check({"id": "1", "extra": 2, "zzz": 3}, schema, strict=True)
    assert violation is not None
    assert (violation.field, violation.rule) == ("body.zzz", "unevaluatedProperties")


def test_anyof_failures_report_the_branch_that_got_furthest() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ship": {
                "anyOf": [
                    {"type": "null"},
                    {"type": "object", "required": ["city"], "properties": {"city": {}}},
                ]
            },
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    missing = check({"ship": {}}, schema)
    assert missing == Violation("body.ship.city", "required", "body.ship.city: is required")
    wrong = check({"id": 1.5}, schema)
    assert wrong == Violation("body.id", "type", "body.id: must be an integer or a string")


def test_odd_property_names_are_quoted_and_long_ones_cut() -> None:
    closed = {"type": "object", "properties": {}, "additionalProperties": False}
    weird = check({"a.b\n": 1}, closed)
    assert weird is not None
    assert weird.field == 'body["a.b\\n"]'
    long = check({"k" * 5000: 1}, closed)
    assert long is not None
    assert len(long.field) < 80
    assert field_path("header", ["x-tenant"]) == "header.x-tenant"
    assert field_path("body", ["items", 2, "name"]) == "body.items[2].name"


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "integer"}, SECRET),
        ({"type": "string", "maxLength": 3}, SECRET),
        ({"type": "string", "minLength": 99}, SECRET),
        ({"type": "string", "pattern": "^[0-9]+$"}, SECRET),
        ({"enum": ["a", "b"]}, SECRET),
        ({"const": "a"}, SECRET),
        ({"not": {"type": "string"}}, SECRET),
        ({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}, SECRET),
        ({"type": "array", "uniqueItems": True}, [SECRET, SECRET]),
        ({"type": "array", "items": {"type": "integer"}}, [1, SECRET]),
        ({"properties": {"a": {"type": "integer"}}}, {"a": SECRET}),
        ({"properties": {}, "additionalProperties": False}, {"extra": SECRET}),
        ({"type": "object", "propertyNames": {"maxLength": 3}}, {"long-name": SECRET}),
    ],
)
def test_messages_never_contain_the_value(schema: dict[str, Any], instance: object) -> None:
    compiled = compile_schema({"type": "object", "properties": {"v": schema}}, base="body")
    violation = compiled.check({"v": instance})
    assert violation is not None
    assert SECRET not in violation.message
    assert SECRET not in violation.field
    assert violation.message.startswith("body.v")


def test_the_first_violation_is_deterministic() -> None:
    bad = {"item": 5, "quantity": "x", "color": "green"}
    first = check(bad)
    assert first is not None
    assert all(check(bad) == first for _ in range(20))


def test_catastrophic_backtracking_is_bounded_and_fails_closed() -> None:
    schema = {"type": "string", "pattern": "^(a|a)*\\1$"}  # a back-reference: fancy-regex
    started = time.perf_counter()
    violation = compile_schema(schema, base="query").check("a" * 5000 + "!")
    assert time.perf_counter() - started < 1.0
    assert violation is not None
    assert violation.rule == "pattern"


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        (
            {"type": "object", "properties": {"a": {"minLength": -1}}},
            ("properties", "a", "minLength"),
        ),
        ({"properties": {"a": {"pattern": "(unclosed"}}}, ("properties", "a", "pattern")),
        ({"type": "strnig"}, ("type",)),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, ("$schema",)),
    ],
)
def test_invalid_schemas_raise_schema_error_with_a_path(
    schema: dict[str, Any], path: tuple[str, ...]
) -> None:
    with pytest.raises(SchemaError) as caught:
        compile_schema(schema, base="body")
    assert caught.value.path == path
    assert caught.value.message


def test_a_strict_rewrite_reports_errors_at_the_original_location() -> None:
    schema = {
        "$defs": {"Base": {"properties": {"a": {"type": "string", "pattern": "(("}}}},
        "allOf": [{"$ref": "#/$defs/Base"}],
    }
    with pytest.raises(SchemaError) as caught:
        compile_schema(schema, base="body", strict=True)
    assert caught.value.path == ("$defs", "Base", "properties", "a", "pattern")


@pytest.mark.parametrize(
    "ref",
    [
        "https://schemas.example.com/order.json",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "order.json#/$defs/Line",
    ],
)
def test_remote_refs_are_refused_without_network(ref: str) -> None:
    started = time.perf_counter()
    with pytest.raises(SchemaError, match=r"unsupported \$ref"):
        compile_schema({"properties": {"a": {"$ref": ref}}}, base="body")
    assert time.perf_counter() - started < 1.0  # refused, not attempted


def test_local_refs_resolve_and_unknown_base_is_a_programming_error() -> None:
    schema = {"$defs": {"Id": {"type": "integer"}}, "properties": {"id": {"$ref": "#/$defs/Id"}}}
    assert check({"id": 1}, schema) is None
    assert check({"id": "x"}, schema) == Violation("body.id", "type", "body.id: must be an integer")
    with pytest.raises(ValueError, match="base"):
        compile_schema(schema, base="cookie")


QUERY: dict[str, Any] = {
    "type": "object",
    "required": ["limit"],
    "properties": {
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "ratio": {"type": "number"},
        "verbose": {"type": "boolean"},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "when": {"type": ["integer", "null"]},
        "sort": {"enum": [1, -1]},
        "page": {"$ref": "#/$defs/Page"},
        "name": {"type": "string"},
    },
    "$defs": {"Page": {"type": "integer", "minimum": 1}},
}


def test_coerce_converts_per_declared_type() -> None:
    values = {
        "limit": ["10"],
        "ratio": ["0.5"],
        "verbose": ["true"],
        "ids": ["1", "2"],
        "tags": ["a,b"],
        "when": ["-3"],
        "sort": ["-1"],
        "page": ["2"],
        "name": ["007"],
        "other": ["x"],
    }
    assert coerce(values, QUERY) == {
        "limit": 10,
        "ratio": 0.5,
        "verbose": True,
        "ids": [1, 2],
        "tags": ["a", "b"],
        "when": -3,
        "sort": -1,
        "page": 2,
        "name": "007",
        "other": "x",
    }
    assert coerce({"ids": ["1,2,3"], "ratio": ["3"], "verbose": ["false"]}, QUERY) == {
        "ids": [1, 2, 3],
        "ratio": 3,
        "verbose": False,
    }


@pytest.mark.parametrize(
    "text", [" 10", "1_000", "١٢", "+5", "0x10", "1e3", "", "nan", "10\n", "9" * 40]
)
def test_coerce_leaves_what_is_not_a_plain_integer_as_a_string(text: str) -> None:
    assert coerce({"limit": [text]}, QUERY) == {"limit": text}
    violation = compile_schema(QUERY, base="query").check(coerce({"limit": [text]}, QUERY))
    assert violation == Violation("query.limit", "type", "query.limit: must be an integer")


@pytest.mark.parametrize("text", ["inf", "-Infinity", "NaN", "1e999", "1.", ".5", "True"])
def test_coerce_rejects_non_json_numbers_and_booleans(text: str) -> None:
    assert coerce({"ratio": [text], "verbose": [text]}, QUERY) == {"ratio": text, "verbose": text}


def test_repeated_values_for_a_scalar_are_a_type_error_not_a_silent_pick() -> None:
    values = coerce({"limit": ["5", "100000"]}, QUERY)
    assert values == {"limit": [5, 100000]}
    violation = compile_schema(QUERY, base="query").check(values)
    assert violation is not None
    assert (violation.field, violation.rule) == ("query.limit", "type")


def test_query_validation_end_to_end() -> None:
    compiled = compile_schema(QUERY, base="query", strict=True)
    assert compiled.check(coerce({"limit": ["5"], "ids": ["1,2"]}, QUERY)) is None
    assert compiled.check(coerce({}, QUERY)) == Violation(
        "query.limit", "required", "query.limit: is required"
    )
    high = compiled.check(coerce({"limit": ["500"]}, QUERY))
    assert high == Violation("query.limit", "maximum", "query.limit: must be at most 100")
    item = compiled.check(coerce({"limit": ["5"], "ids": ["1,x"]}, QUERY))
    assert item is not None
    assert (item.field, item.rule) == ("query.ids[1]", "type")
    extra = compiled.check(coerce({"limit": ["5"], "debug": ["1"]}, QUERY))
    assert extra is not None
    assert (extra.field, extra.rule) == ("query.debug", "additionalProperties")


def test_header_values() -> None:
    schema = {
        "type": "object",
        "required": ["x-tenant"],
        "properties": {
            "x-tenant": {"type": "string", "pattern": "^[a-z]+$"},
            "x-retry": {"type": "integer"},
        },
    }
    compiled = compile_schema(schema, base="header")
    assert compiled.check(coerce({"x-tenant": ["acme"], "x-retry": ["2"]}, schema)) is None
    violation = compiled.check(coerce({"x-tenant": ["ACME"]}, schema))
    assert violation == Violation(
        "header.x-tenant", "pattern", "header.x-tenant: does not match the required pattern"
    )


def test_map_subschemas_visits_every_subschema_with_its_location() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "items": {"type": "integer"},
        "allOf": [{"minProperties": 1}],
        "enum": [{"properties": "not a schema"}],
        "additionalProperties": False,
    }
    seen: list[tuple[str | int, ...]] = []

    def visit(where: tuple[str | int, ...], sub: Any) -> Any:
        seen.append(where)
        return {"seen": True} if isinstance(sub, dict) else sub

    out = map_subschemas(schema, visit)
    assert sorted(seen, key=str) == sorted(
        [("properties", "a"), ("items",), ("allOf", 0), ("additionalProperties",)], key=str
    )
    assert out["properties"] == {"a": {"seen": True}}
    assert out["enum"] == schema["enum"]  # values are data, not schemas


def test_format_is_an_annotation_as_in_2020_12() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}
    assert check({"id": "not-a-uuid"}, schema) is None


def test_values_that_are_not_json_are_violations_not_crashes() -> None:
    compiled = compile_schema({"type": "object"}, base="body")
    for instance in ({1, 2}, {1: "int key"}, b"bytes"):
        assert compiled.check(instance) == Violation("body", "type", "body: is not a JSON value")


_MARKED = st.text(alphabet="abcXYZ019 -_.", max_size=12).map(lambda t: "VAL" + t)
_INSTANCES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | _MARKED,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["item", "quantity", "price", "color", "sku", "items",
                                       "address", "name", "city", "geo", "zz"]), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip
_ORDER_CHECKS = [compile_schema(ORDER, base="body", strict=s) for s in (False, True)]


@settings(max_examples=300, deadline=None)
@given(instance=_INSTANCES)
def test_no_instance_value_ever_reaches_a_violation(instance: object) -> None:
    for compiled in _ORDER_CHECKS:
        violation = compiled.check(instance)
        if violation is not None:
            assert "VAL" not in violation.message
            assert violation.message.startswith(violation.field + ": ")
