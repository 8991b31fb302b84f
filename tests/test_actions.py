"""Action extractors: GraphQL, JSON-RPC, gRPC and SQL requests named for policy globs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.payload.actions import (
    SQL_DIALECTS,
    ActionError,
    GraphQLLimits,
    graphql_actions,
    graphql_request,
    grpc_actions,
    jsonrpc_actions,
    sql_actions,
)

GQL = GraphQLLimits()


def _reason_of(call: Callable[..., tuple[str, ...]], *args: object) -> str:
    with pytest.raises(ActionError) as info:
        call(*args)
    assert info.value.message
    assert str(info.value) == info.value.message
    return info.value.reason


# --- GraphQL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "operation", "actions"),
    [
        ("{ orders { id } }", None, ("graphql:query:orders",)),
        ("query { orders { id } me { name } }", None, ("graphql:query:orders", "graphql:query:me")),
        ("query Q($id: ID!) { order(id: $id) { id } }", None, ("graphql:query:order",)),
        ("mutation { deleteOrder(id: 1) { ok } }", None, ("graphql:mutation:deleteOrder",)),
        (
            "subscription OnOrder { orderPlaced { id } }",
            None,
            ("graphql:subscription:orderPlaced",),
        ),
        ("{ a: orders { id } b: orders { id } }", None, ("graphql:query:orders",)),
        ("{ me: deleteEverything }", None, ("graphql:query:deleteEverything",)),
        ("{ __typename orders }", None, ("graphql:query:orders",)),
        ("{ __typename }", None, ()),
        ("{ __schema { types { name } } }", None, ("graphql:query:__schema",)),
        ('{ __type(name: "Order") { fields { name } } }', None, ("graphql:query:__type",)),
        (
            "{ ...Root } fragment Root on Query { orders users }",
            None,
            ("graphql:query:orders", "graphql:query:users"),
        ),
        ("{ ... on Query { orders } me }", None, ("graphql:query:orders", "graphql:query:me")),
        ("{ ... { orders } }", None, ("graphql:query:orders",)),
        (
            "{ ...A } fragment A on Query { ...B x } fragment B on Query { y }",
            None,
            ("graphql:query:y", "graphql:query:x"),
        ),
        (
            "mutation M { ...F } fragment F on Mutation { a: pay(amount: 1) }",
            None,
            ("graphql:mutation:pay",),
        ),
        ("{ orders { ...F } } fragment F on Order { id secret }", None, ("graphql:query:orders",)),
        ("query A { a } query B { b }", "B", ("graphql:query:b",)),
        ("query A { a } mutation B { b }", "B", ("graphql:mutation:b",)),
        ("# comment\n{ a } # trailing", None, ("graphql:query:a",)),
        ('{ a(s: "{ b }", t: """ { c } """) }', None, ("graphql:query:a",)),
        ("{ a @include(if: false) }", None, ("graphql:query:a",)),
        ("{ a { } }", None, ("graphql:query:a",)),
    ],
)
def test_graphql_actions(document: str, operation: str | None, actions: tuple[str, ...]) -> None:
    assert graphql_actions(document, operation, GQL) == actions


@pytest.mark.parametrize(
    ("document", "operation", "reason"),
    [
        ("", None, "graphql_invalid"),
        ("   \n", None, "graphql_invalid"),
        ("{ a", None, "graphql_syntax"),
        ("{ a(: 1) }", None, "graphql_syntax"),
        ("query { a } }", None, "graphql_syntax"),
        ("# only a comment", None, "graphql_syntax"),
        ("{ 'a' }", None, "graphql_syntax"),
        ("query A { a } query B { b }", None, "graphql_operation"),
        ("query A { a } query B { b }", "C", "graphql_operation"),
        ("{ a }", "A", "graphql_operation"),
        ("query A { a } query A { b }", "A", "graphql_operation"),
        ("fragment F on Query { a }", None, "graphql_operation"),
        ("type Query { a: Int }", None, "graphql_invalid"),
        ("{ a } schema { query: Query }", None, "graphql_invalid"),
        ("{ ...Missing }", None, "graphql_invalid"),
        ("{ ...F } fragment F on Q { a } fragment F on Q { b }", None, "graphql_invalid"),
        ("{ ...F } fragment F on Q { ...F }", None, "graphql_invalid"),
        ("{ ...F } fragment F on Q { ...G } fragment G on Q { ...F }", None, "graphql_invalid"),
        ("{ ...F } fragment F on Q { ... on Q { x { ...F } } }", None, "graphql_invalid"),
        (
            "{ a { ...F } } fragment F on A { b { ...G } } fragment G on B { c { ...F } }",
            None,
            "graphql_invalid",
        ),
    ],
)
def test_graphql_errors(document: str, operation: str | None, reason: str) -> None:
    assert _reason_of(graphql_actions, document, operation, GQL) == reason


def _nested(depth: int) -> str:
    return "{ " + "f { " * (depth - 1) + "leaf" + " }" * depth


def test_graphql_depth_limit() -> None:
    assert graphql_actions(_nested(10), None, GQL) == ("graphql:query:f",)
    assert _reason_of(graphql_actions, _nested(11), None, GQL) == "graphql_too_deep"
    assert graphql_actions(_nested(3), None, GraphQLLimits(max_depth=3)) == ("graphql:query:f",)
    assert (
        _reason_of(graphql_actions, _nested(4), None, GraphQLLimits(max_depth=3))
        == "graphql_too_deep"
    )


def test_graphql_depth_counts_through_fragments() -> None:
    doc = "{ a { ...F } } fragment F on A { b { ... on B { c { d } } } }"
    assert graphql_actions(doc, None, GraphQLLimits(max_depth=4)) == ("graphql:query:a",)
    assert _reason_of(graphql_actions, doc, None, GraphQLLimits(max_depth=3)) == "graphql_too_deep"


@pytest.mark.parametrize("depth", [300, 5000])
def test_graphql_documents_nested_past_the_parser(depth: int) -> None:
    doc = "{" + "a{" * depth + "b" + "}" * (depth + 1)
    assert (
        _reason_of(graphql_actions, doc, None, GraphQLLimits(max_tokens=50_000))
        == "graphql_too_deep"
    )
    args = "{ a(x: " + "[" * depth + "1" + "]" * depth + ") }"
    assert (
        _reason_of(graphql_actions, args, None, GraphQLLimits(max_tokens=50_000))
        == "graphql_too_deep"
    )


def test_graphql_alias_limit() -> None:
    def doc(n: int) -> str:
        return "{ " + " ".join(f"a{i}: login(pw: {i})" for i in range(n)) + " }"

    assert graphql_actions(doc(30), None, GQL) == ("graphql:query:login",)
    assert _reason_of(graphql_actions, doc(31), None, GQL) == "graphql_too_many_aliases"
    nested = "{ x { " + " ".join(f"b{i}: y" for i in range(31)) + " } }"
    assert _reason_of(graphql_actions, nested, None, GQL) == "graphql_too_many_aliases"


def test_graphql_aliases_count_after_fragment_expansion() -> None:
    doc = (
        "{ ...F ...F ...F } fragment F on Query { " + " ".join(f"a{i}: x" for i in range(10)) + " }"
    )
    assert graphql_actions(doc, None, GQL) == ("graphql:query:x",)
    assert (
        _reason_of(graphql_actions, doc, None, GraphQLLimits(max_aliases=29))
        == "graphql_too_many_aliases"
    )


def test_graphql_field_limit_counts_expanded_fragments() -> None:
    fields = " ".join(f"f{i}" for i in range(50))
    doc = "{ " + "x { ...F } " * 10 + "} fragment F on X { " + fields + " }"
    # 10 x fields + 10 * 50 fragment fields = 510
    assert _reason_of(graphql_actions, doc, None, GQL) == "graphql_too_complex"
    assert graphql_actions(doc, None, GraphQLLimits(max_fields=510)) == ("graphql:query:x",)
    assert (
        _reason_of(graphql_actions, doc, None, GraphQLLimits(max_fields=509))
        == "graphql_too_complex"
    )


def test_graphql_exponential_fragments_are_cut_short() -> None:
    chain = " ".join(f"fragment F{i} on Q {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    start = time.perf_counter()
    with_fields = "{ ...F0 } " + chain + " fragment F40 on Q { leaf }"
    assert _reason_of(graphql_actions, with_fields, None, GQL) == "graphql_too_complex"
    empty = "{ ...F0 } " + chain + " fragment F40 on Q { }"
    assert _reason_of(graphql_actions, empty, None, GQL) == "graphql_too_complex"
    assert time.perf_counter() - start < 2.0


def test_graphql_size_limits() -> None:
    assert _reason_of(graphql_actions, "{ a }" + " " * 100_000, None, GQL) == "graphql_too_large"
    assert graphql_actions("{ a }" + " " * 99_990, None, GQL) == ("graphql:query:a",)
    many = "{ " + "a " * 25_000 + "}"
    assert _reason_of(graphql_actions, many, None, GQL) == "graphql_too_large"
    comments = "#\n" * 30_000 + "{ a }"
    assert _reason_of(graphql_actions, comments, None, GQL) == "graphql_too_large"
    assert graphql_actions("{ a b c }", None, GraphQLLimits(max_tokens=5)) == (
        "graphql:query:a",
        "graphql:query:b",
        "graphql:query:c",
    )
    assert (
        _reason_of(graphql_actions, "{ a b c d }", None, GraphQLLimits(max_tokens=5))
        == "graphql_too_large"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_depth": -1},
        {"max_aliases": -1},
        {"max_fields": -1},
        {"max_length": 0},
        {"max_tokens": 0},
    ],
)
def test_graphql_limits_validate_themselves(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="GraphQL"):
        GraphQLLimits(**kwargs)


@pytest.mark.parametrize(
    ("method", "query", "body", "actions"),
    [
        ("GET", {"query": "{ orders { id } }"}, None, ("graphql:query:orders",)),
        (
            "get",
            {"query": "query A { a } query B { b }", "operationName": "B"},
            None,
            ("graphql:query:b",),
        ),
        ("GET", {"query": "mutation { drop }"}, None, ("graphql:mutation:drop",)),
        ("HEAD", {"query": "{ a }"}, None, ("graphql:query:a",)),
        ("POST", {}, {"query": "{ a }"}, ("graphql:query:a",)),
        (
            "POST",
            {},
            {
                "query": "query A { a } mutation B { b }",
                "operationName": "B",
                "variables": {"x": 1},
            },
            ("graphql:mutation:b",),
        ),
        (
            "POST",
            {},
            {"query": "{ a }", "operationName": None, "variables": None, "extensions": {}},
            ("graphql:query:a",),
        ),
        ("POST", {}, {"query": "{ a }", "operationName": ""}, ("graphql:query:a",)),
        ("POST", {"operationName": "B"}, "query A { a } query B { b }", ("graphql:query:b",)),
        (
            "POST",
            {},
            [{"query": "{ a }"}, {"query": "mutation { b }"}, {"query": "{ a }"}],
            ("graphql:query:a", "graphql:mutation:b"),
        ),
    ],
)
def test_graphql_requests(
    method: str, query: dict[str, str], body: object, actions: tuple[str, ...]
) -> None:
    assert graphql_request(method, query, body, GQL) == actions


@pytest.mark.parametrize(
    ("method", "query", "body", "reason"),
    [
        ("GET", {}, None, "graphql_invalid"),
        ("GET", {"query": ""}, None, "graphql_invalid"),
        ("PUT", {"query": "{ a }"}, {"query": "{ a }"}, "graphql_invalid"),
        ("POST", {}, None, "graphql_invalid"),
        ("POST", {}, 42, "graphql_invalid"),
        ("POST", {}, {}, "graphql_invalid"),
        ("POST", {}, {"query": None}, "graphql_invalid"),
        ("POST", {}, {"query": ["{ a }"]}, "graphql_invalid"),
        (
            "POST",
            {},
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}},
            "graphql_invalid",
        ),
        ("POST", {}, {"query": "{ a }", "operationName": 1}, "graphql_invalid"),
        ("POST", {}, {"query": "{ a }", "variables": [1]}, "graphql_invalid"),
        ("POST", {}, {"query": "{ a }", "variables": "{}"}, "graphql_invalid"),
        ("POST", {}, {"query": "{ a }", "extensions": 1}, "graphql_invalid"),
        ("POST", {}, [], "graphql_invalid"),
        ("POST", {}, [{"query": "{ a }"}, "x"], "graphql_invalid"),
        ("POST", {}, [{"query": "{ a }"}] * 101, "graphql_too_large"),
        ("POST", {}, {"query": "{ a } { b }"}, "graphql_operation"),
        ("POST", {}, [{"query": "{ a }"}, {"query": "{ b"}], "graphql_syntax"),
    ],
)
def test_graphql_bad_requests(
    method: str, query: dict[str, str], body: object, reason: str
) -> None:
    assert _reason_of(graphql_request, method, query, body, GQL) == reason


def test_graphql_batch_of_a_hundred_is_allowed() -> None:
    assert graphql_request("POST", {}, [{"query": "{ a }"}] * 100, GQL) == ("graphql:query:a",)


# --- JSON-RPC ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "actions"),
    [
        ({"jsonrpc": "2.0", "method": "eth_call", "params": [], "id": 1}, ("jsonrpc:eth_call",)),
        ({"jsonrpc": "2.0", "method": "notify"}, ("jsonrpc:notify",)),
        (
            {"jsonrpc": "2.0", "method": "a.b/c", "params": {"x": 1}, "id": "abc"},
            ("jsonrpc:a.b/c",),
        ),
        ({"jsonrpc": "2.0", "method": "x", "id": None}, ("jsonrpc:x",)),
        ({"jsonrpc": "2.0", "method": "x", "id": 1.5}, ("jsonrpc:x",)),
        ({"jsonrpc": "2.0", "method": "rpc.discover"}, ("jsonrpc:rpc.discover",)),
        (
            [
                {"jsonrpc": "2.0", "method": "b", "id": 1},
                {"jsonrpc": "2.0", "method": "a", "id": 2},
                {"jsonrpc": "2.0", "method": "b", "id": 3},
            ],
            ("jsonrpc:b", "jsonrpc:a"),
        ),
        ([{"jsonrpc": "2.0", "method": "m"}] * 100, ("jsonrpc:m",)),
    ],
)
def test_jsonrpc_actions(body: object, actions: tuple[str, ...]) -> None:
    assert jsonrpc_actions(body) == actions


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "jsonrpc_invalid"),
        ("eth_call", "jsonrpc_invalid"),
        (42, "jsonrpc_invalid"),
        ({}, "jsonrpc_invalid"),
        ({"method": "x"}, "jsonrpc_invalid"),
        ({"jsonrpc": "1.0", "method": "x"}, "jsonrpc_invalid"),
        ({"jsonrpc": 2.0, "method": "x"}, "jsonrpc_invalid"),
        ({"jsonrpc": ["2.0"], "method": "x"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": ""}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": 5}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": ["a"]}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "a\nb"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "a\ud800"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "\x7f"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "m" * 257}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "x", "params": "p"}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "x", "params": None}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "x", "id": True}, "jsonrpc_invalid"),
        ({"jsonrpc": "2.0", "method": "x", "id": {}}, "jsonrpc_invalid"),
        ([], "jsonrpc_invalid"),
        ([{"jsonrpc": "2.0", "method": "a"}, 1], "jsonrpc_invalid"),
        ([[{"jsonrpc": "2.0", "method": "a"}]], "jsonrpc_invalid"),
        ([{"jsonrpc": "2.0", "method": "a"}, {"jsonrpc": "2.0"}], "jsonrpc_invalid"),
        ([{"jsonrpc": "2.0", "method": "m"}] * 101, "jsonrpc_batch_too_large"),
    ],
)
def test_jsonrpc_errors(body: object, reason: str) -> None:
    assert _reason_of(jsonrpc_actions, body) == reason


# --- gRPC --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/orders.v1.OrderService/GetOrder", "grpc:orders.v1.OrderService/GetOrder"),
        ("/grpc.health.v1.Health/Check", "grpc:grpc.health.v1.Health/Check"),
        ("/Service/Method", "grpc:Service/Method"),
        ("/a_b.C9/_m", "grpc:a_b.C9/_m"),
    ],
)
def test_grpc_actions(path: str, action: str) -> None:
    assert grpc_actions(path) == (action,)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/pkg.Service",
        "/pkg.Service/",
        "pkg.Service/Method",
        "/pkg.Service/Method/extra",
        "/pkg.Service/Method?x=1",
        "/pkg..Service/Method",
        "/.Service/Method",
        "/pkg.Service./Method",
        "/pkg.Service/Me-thod",
        "/pkg.9Service/Method",
        "/pkg.Service/Method\n",
        "/pkg%2EService/Method",
        "//Method",
        "/pkg.Service//Method",
        "/" + "a." * 600 + "S/M",
    ],
)
def test_grpc_bad_paths(path: str) -> None:
    assert _reason_of(grpc_actions, path) == "grpc_bad_path"


# --- SQL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "actions"),
    [
        # the examples the policy documentation relies on
        ("SELECT id FROM orders WHERE id = 1", ("sql:select:orders",)),
        ("DELETE FROM orders WHERE id = 1", ("sql:delete:orders",)),
        ("DELETE FROM orders", ("sql:delete:orders", "sql:flag:no-where")),
        ("DROP TABLE orders", ("sql:drop:orders", "sql:flag:dangerous")),
        # comments, casing, quoting, schemas
        ("dElEtE/**/FROM orders", ("sql:delete:orders", "sql:flag:no-where")),
        ("DeLeTe FrOm Orders -- all of them", ("sql:delete:orders", "sql:flag:no-where")),
        ("/* hi */ SELECT * FROM orders /* ; DROP TABLE x */", ("sql:select:orders",)),
        ("SELECT 'a; DROP TABLE x' FROM orders", ("sql:select:orders",)),
        ('SELECT * FROM "Orders"', ("sql:select:orders",)),
        (
            "SELECT * FROM Shop.Orders o JOIN shop.customers c ON c.id = o.cid",
            ("sql:select:shop.orders", "sql:select:shop.customers"),
        ),
        ("SELECT * FROM cat.shop.orders", ("sql:select:cat.shop.orders",)),
        ("select 1", ("sql:select",)),
        ("SELECT 1;", ("sql:select",)),
        ("SELECT now()", ("sql:select",)),
        # reads: joins, subqueries, unions, set operations
        ("SELECT * FROM a, b", ("sql:select:a", "sql:select:b")),
        ("SELECT * FROM a WHERE id IN (SELECT aid FROM b)", ("sql:select:a", "sql:select:b")),
        ("SELECT * FROM (SELECT * FROM secrets) s", ("sql:select:secrets",)),
        ("SELECT a FROM x UNION SELECT a FROM y", ("sql:select:x", "sql:select:y")),
        (
            "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
            ("sql:select:t", "sql:select:u"),
        ),
        # CTEs: their names are not tables, their sources are, scoping respected
        ("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", ("sql:select:orders",)),
        ("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", ("sql:select",)),
        ("WITH b AS (SELECT * FROM a), a AS (SELECT 1) SELECT * FROM b", ("sql:select:a",)),
        ("WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets", ("sql:select:secrets",)),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r",
            ("sql:select",),
        ),
        (
            "SELECT * FROM secrets, (WITH secrets AS (SELECT 1) SELECT * FROM secrets) s",
            ("sql:select:secrets",),
        ),
        ("WITH x AS (SELECT 1) SELECT * FROM s.x", ("sql:select:s.x",)),
        # writes
        ("INSERT INTO orders (id) VALUES (1)", ("sql:insert:orders",)),
        (
            "INSERT INTO archive SELECT * FROM orders WHERE old",
            ("sql:insert:archive", "sql:select:orders"),
        ),
        ("INSERT INTO t (a) SELECT a FROM t", ("sql:insert:t", "sql:select:t")),
        ("UPDATE orders SET paid = true", ("sql:update:orders", "sql:flag:no-where")),
        ("UPDATE orders SET paid = true WHERE id = 3", ("sql:update:orders",)),
        (
            "UPDATE orders SET total = (SELECT sum(x) FROM items) WHERE id = 1",
            ("sql:update:orders", "sql:select:items"),
        ),
        ("UPDATE t SET a = 1 FROM s WHERE t.id = s.id", ("sql:update:t", "sql:select:s")),
        ("DELETE FROM t USING s WHERE t.id = s.id", ("sql:delete:t", "sql:select:s")),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            ("sql:merge:t", "sql:select:s"),
        ),
        (
            "MERGE INTO t USING (SELECT * FROM s) AS src ON t.id = src.id "
            "WHEN MATCHED THEN UPDATE SET a = 1 WHEN NOT MATCHED THEN INSERT (a) VALUES (1)",
            ("sql:merge:t", "sql:select:s"),
        ),
        (
            "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
            ("sql:delete:orders", "sql:flag:no-where"),
        ),
        (
            "WITH src AS (SELECT * FROM a) INSERT INTO b SELECT * FROM src",
            ("sql:insert:b", "sql:select:a"),
        ),
        ("SELECT * INTO copy FROM orders", ("sql:create:copy", "sql:select:orders")),
        # DDL and privileges
        ("CREATE TABLE t (id INT)", ("sql:create:t",)),
        ("CREATE TABLE t AS SELECT * FROM s", ("sql:create:t", "sql:select:s")),
        ("CREATE VIEW v AS SELECT * FROM s", ("sql:create:v", "sql:select:s")),
        ("CREATE INDEX i ON orders (id)", ("sql:create:orders",)),
        ("DROP TABLE IF EXISTS a.b", ("sql:drop:a.b", "sql:flag:dangerous")),
        ("DROP VIEW v", ("sql:drop:v", "sql:flag:dangerous")),
        ("TRUNCATE TABLE a, b", ("sql:truncate:a", "sql:truncate:b", "sql:flag:dangerous")),
        ("TRUNCATE orders", ("sql:truncate:orders", "sql:flag:dangerous")),
        ("ALTER TABLE orders ADD COLUMN x INT", ("sql:alter:orders", "sql:flag:dangerous")),
        ("ALTER TABLE a RENAME TO b", ("sql:alter:a", "sql:alter:b", "sql:flag:dangerous")),
        ("GRANT SELECT ON orders TO bob", ("sql:grant:orders", "sql:flag:dangerous")),
        ("REVOKE SELECT ON orders FROM bob", ("sql:revoke:orders", "sql:flag:dangerous")),
        # other statements
        ("SET search_path = x", ("sql:set",)),
        ("BEGIN", ("sql:begin",)),
        ("COMMIT", ("sql:commit",)),
        ("DESCRIBE orders", ("sql:describe:orders",)),
        ("VACUUM orders", ("sql:vacuum",)),
        ("SELECT * FROM generate_series(1, 3)", ("sql:select:generate_series()",)),
        ("SELECT * FROM ?", ("sql:select:?",)),
        # several statements
        (
            "SELECT 1; DROP TABLE x",
            ("sql:select", "sql:drop:x", "sql:flag:dangerous", "sql:flag:multiple-statements"),
        ),
        ("SELECT * FROM a; SELECT * FROM a", ("sql:select:a", "sql:flag:multiple-statements")),
        (
            "DELETE FROM a; UPDATE b SET x = 1; DROP TABLE c",
            (
                "sql:delete:a",
                "sql:update:b",
                "sql:drop:c",
                "sql:flag:dangerous",
                "sql:flag:no-where",
                "sql:flag:multiple-statements",
            ),
        ),
    ],
)
def test_sql_actions(sql: str, actions: tuple[str, ...]) -> None:
    assert sql_actions(sql) == actions


@pytest.mark.parametrize(
    ("sql", "dialect", "actions"),
    [
        (
            "UPDATE t1 JOIN t2 ON t1.id = t2.id SET t2.x = 1",
            "mysql",
            ("sql:update:t1", "sql:update:t2", "sql:flag:no-where"),
        ),
        (
            "DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id WHERE t2.x = 1",
            "mysql",
            ("sql:delete:t1", "sql:select:t1", "sql:select:t2"),
        ),
        ("SELECT * FROM `Shop`.`Orders`", "mysql", ("sql:select:shop.orders",)),
        ("SELECT TOP 5 * FROM [dbo].[Orders]", "tsql", ("sql:select:dbo.orders",)),
        ("SELECT * FROM orders WHERE name ILIKE 'a%'", "postgres", ("sql:select:orders",)),
        ("SELECT * FROM `proj.ds.orders`", "bigquery", ("sql:select:proj.ds.orders",)),
    ],
)
def test_sql_dialects(sql: str, dialect: str, actions: tuple[str, ...]) -> None:
    assert dialect in SQL_DIALECTS
    assert sql_actions(sql, dialect) == actions


def test_unknown_dialect_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="dialect"):
        sql_actions("SELECT 1", "no-such-dialect")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "sql_invalid"),
        ("   \n\t", "sql_invalid"),
        (";", "sql_invalid"),
        (";;", "sql_invalid"),
        ("-- only a comment", "sql_invalid"),
        ("/* only a comment */", "sql_invalid"),
        ("SELECT FROM", "sql_syntax"),
        ("SELEC * FROM orders", "sql_syntax"),
        ("DELETE orders orders orders", "sql_syntax"),
        ("FOO orders", "sql_syntax"),
        ("orders", "sql_syntax"),
        ("1 + 1", "sql_syntax"),
        ("SELECT 1 SELECT 2", "sql_syntax"),
        ("SELECT 'unterminated", "sql_syntax"),
        ("x' OR '1'='1", "sql_syntax"),
        ("SELECT * FROM t WHERE (a = 1", "sql_syntax"),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "sql_syntax"),
        ("REPLACE INTO t VALUES (1)", "sql_syntax"),
        ("SELECT '\ud800'", "sql_invalid"),
        ('SELECT * FROM "a\r\nX-Injected: 1"', "sql_invalid"),
        ('DROP TABLE "x\ty"', "sql_invalid"),  # generic dialect: read as a bare command
        ("SELECT " + "(" * 25 + "1" + ")" * 25, "sql_too_large"),
        ("SELECT " + "NOT " * 3000 + "1", "sql_too_large"),
        ("SELECT " + "CASE WHEN a THEN " * 60 + "1" + " END" * 60, "sql_too_large"),
        ("SELECT " + "- " * 3000 + "1", "sql_too_large"),
        ("SELECT 1 FROM t WHERE a = 1" + " AND a = 1" * 7000, "sql_too_large"),  # over 64 KB
    ],
)
def test_sql_errors(sql: str, reason: str) -> None:
    assert _reason_of(sql_actions, sql) == reason


def test_sql_nesting_within_the_limit_parses() -> None:
    assert sql_actions("SELECT " + "(" * 24 + "1" + ")" * 24) == ("sql:select",)
    nested = "SELECT * FROM " + "(SELECT * FROM " * 10 + "t" + ") x" * 10
    assert sql_actions(nested) == ("sql:select:t",)


def test_sql_size_limit_counts_utf8_bytes() -> None:
    head = "SELECT 'x' FROM t WHERE a = '"
    fits = head + "a" * (64 * 1024 - len(head) - 1) + "'"
    assert len(fits.encode()) == 64 * 1024
    assert sql_actions(fits) == ("sql:select:t",)
    wide = head + "é" * 40_000 + "'"  # 40,000 characters but 80,000 bytes
    assert _reason_of(sql_actions, wide) == "sql_too_large"


def test_sql_text_does_not_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert sql_actions("VACUUM secret_table_name") == ("sql:vacuum",)
        assert _reason_of(sql_actions, "REPLACE INTO secret_table_name VALUES (1)") == "sql_syntax"
    assert "secret_table_name" not in caplog.text


def test_sql_rejects_non_strings() -> None:
    assert _reason_of(sql_actions, None) == "sql_invalid"
    assert _reason_of(sql_actions, b"SELECT 1") == "sql_invalid"


# --- robustness --------------------------------------------------------------------------

SQL_WORDS = (
    "SELECT",
    "FROM",
    "WHERE",
    "DELETE",
    "UPDATE",
    "SET",
    "INSERT",
    "INTO",
    "VALUES",
    "DROP",
    "TABLE",
    "WITH",
    "AS",
    "JOIN",
    "ON",
    "UNION",
    "ALL",
    "(",
    ")",
    ",",
    ";",
    "*",
    "=",
    "'a'",
    "orders",
    "x",
    "1",
    "--",
    "/*",
    "*/",
    "NOT",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "CREATE",
    "TRUNCATE",
    "GRANT",
    "TO",
    "MERGE",
    "USING",
    '"q"',
    "`b`",
    "[c]",
    "$1",
    "?",
    ":p",
    "@v",
    "\\",
    ".",
)
GRAPHQL_WORDS = (
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "...",
    "F",
    "Q",
    "a",
    "b:",
    ":",
    "$v",
    "@skip",
    '"s"',
    '"""',
    "#",
    "\n",
    "1",
    "true",
    "null",
    "__typename",
    "__schema",
    "=",
    "!",
    ",",
    "&",
    "|",
)


def _only_action_errors(call: Callable[..., tuple[str, ...]], *args: object) -> None:
    try:
        outcome: tuple[str, ...] | ActionError = call(*args)
    except ActionError as err:
        outcome = err
    if isinstance(outcome, ActionError):
        assert outcome.reason
        assert outcome.message
    else:
        assert isinstance(outcome, tuple)
        assert all(isinstance(a, str) and a for a in outcome)
        assert len(set(outcome)) == len(outcome)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=120))
def test_arbitrary_text_to_extractors_raises_only_action_errors(text: str) -> None:
    _only_action_errors(graphql_actions, text, None, GQL)
    _only_action_errors(graphql_actions, text, text[:5], GQL)
    _only_action_errors(sql_actions, text)
    _only_action_errors(jsonrpc_actions, text)
    _only_action_errors(grpc_actions, text)
    _only_action_errors(graphql_request, "POST", {}, text, GQL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(st.sampled_from(SQL_WORDS), max_size=25),
    dialect=st.sampled_from([None, "mysql", "postgres", "tsql"]),
)
def test_sql_like_text_raises_only_action_errors(words: list[str], dialect: str | None) -> None:
    _only_action_errors(sql_actions, " ".join(words), dialect)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(st.sampled_from(GRAPHQL_WORDS), max_size=40))
def test_graphql_like_text_raises_only_action_errors(words: list[str]) -> None:
    _only_action_errors(
        graphql_actions, " ".join(words), None, GraphQLLimits(max_depth=3, max_fields=20)
    )


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
rpc_call = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "method": st.one_of(st.text(max_size=6), st.integers()),
    },
    optional={"params": json_like, "id": json_like},
)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(json_like, rpc_call, st.lists(rpc_call, max_size=5)))
def test_jsonrpc_on_any_json_raises_only_action_errors(body: object) -> None:
    _only_action_errors(jsonrpc_actions, body)
    _only_action_errors(graphql_request, "POST", {}, body, GQL)
