"""End to end: payload guardrails of the shipped policies, through a real Envoy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import SHIPPED_POLICIES
from tests.envoystack import EnvoyStack, Reply

pytestmark = pytest.mark.envoy

READER = {"x-api-key": "demo-reader-key", "content-type": "application/json"}
ADMIN = {"x-api-key": "demo-admin-key", "content-type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyStack]:
    work = tmp_path_factory.mktemp("e2e-payload")
    policies = work / "policies"
    shutil.copytree(SHIPPED_POLICIES, policies)
    with EnvoyStack(policies, work).start() as s:
        yield s


def post(stack: EnvoyStack, path: str, body: object, headers: dict[str, str]) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return stack.request("POST", path, headers=headers, body=data)


def denial(reply: Reply) -> dict[str, object]:
    """The JSON deny body, checked to carry the decision id and the reason header."""
    body = reply.json()
    assert body["decision_id"] == reply.headers["x-guardrail-decision-id"]
    assert body["reason"] == reply.headers["x-guardrail-reason"]
    return body


@pytest.mark.parametrize("headers", [READER, ADMIN])
def test_a_valid_order_reaches_the_upstream(stack: EnvoyStack, headers: dict[str, str]) -> None:
    r = post(stack, "/api/orders", {"item": "green tea", "quantity": 3}, headers)
    assert r.status == 200
    echoed = r.json()
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/api/orders"
    assert r.upstream_headers()["x-guardrail-principal"] in ("reader", "admin")


def test_a_missing_field_is_named(stack: EnvoyStack) -> None:
    r = post(stack, "/api/orders", {"item": "green tea"}, READER)
    assert r.status == 400
    body = denial(r)
    assert body["reason"] == "schema_violation"
    assert body["field"] == "body.quantity"
    assert body["rule"] == "required"


def test_a_field_the_api_does_not_know_is_refused(stack: EnvoyStack) -> None:
    r = post(stack, "/api/orders", {"item": "tea", "quantity": 1, "price": 0}, READER)
    assert r.status == 400
    body = denial(r)
    assert (body["field"], body["rule"]) == ("body.price", "additionalProperties")


def test_sql_injection_in_a_field_is_blocked(stack: EnvoyStack) -> None:
    r = post(stack, "/api/orders", {"item": "x' OR '1'='1", "quantity": 1}, READER)
    assert r.status == 403
    body = denial(r)
    assert body["reason"] == "sqli_detected"
    assert body["detector"] == "sqli"
    assert body["field"] == "body.item"
    assert "OR '1'" not in r.body.decode()  # the payload is never echoed


def test_a_body_over_64_kb_is_refused(stack: EnvoyStack) -> None:
    big = json.dumps({"item": "x" * 70_000, "quantity": 1}).encode()
    r = post(stack, "/api/orders", big, READER)
    assert r.status == 413
    assert denial(r)["reason"] == "body_too_large"


def test_malformed_json_is_a_400(stack: EnvoyStack) -> None:
    r = post(stack, "/api/orders", b'{"item": "tea", "quantity": ', READER)
    assert r.status == 400
    assert denial(r)["reason"] == "malformed_json"


def test_another_content_type_is_a_415(stack: EnvoyStack) -> None:
    headers = {**READER, "content-type": "text/plain"}
    r = post(stack, "/api/orders", b"item=tea", headers)
    assert r.status == 415
    assert denial(r)["reason"] == "unsupported_content_type"


SELECT = "SELECT id FROM orders WHERE id = 1"


@pytest.mark.parametrize("headers", [READER, ADMIN])
def test_select_from_orders_is_allowed_for_both(stack: EnvoyStack, headers: dict[str, str]) -> None:
    r = post(stack, "/api/sql", {"query": SELECT}, headers)
    assert r.status == 200
    assert r.upstream_headers()["x-guardrail-principal"] in ("reader", "admin")


def test_reader_may_not_delete(stack: EnvoyStack) -> None:
    r = post(stack, "/api/sql", {"query": "DELETE FROM orders WHERE id = 1"}, READER)
    assert r.status == 403
    assert denial(r)["reason"] == "no_rule_matched"


def test_admin_may_delete_with_a_where(stack: EnvoyStack) -> None:
    r = post(stack, "/api/sql", {"query": "DELETE FROM orders WHERE id = 1"}, ADMIN)
    assert r.status == 200


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM orders",
        "UPDATE orders SET quantity = 0",
        "DROP TABLE orders",
        "SELECT id FROM orders WHERE id = 1; DROP TABLE orders",
    ],
)
def test_dangerous_sql_is_refused_even_for_admin(stack: EnvoyStack, query: str) -> None:
    r = post(stack, "/api/sql", {"query": query}, ADMIN)
    assert r.status == 403
    assert denial(r)["reason"] == "dangerous_sql"


def test_unparseable_sql_fails_closed(stack: EnvoyStack) -> None:
    r = post(stack, "/api/sql", {"query": "SELEKT nonsense FROM (("}, ADMIN)
    assert r.status == 400
    assert denial(r)["reason"] == "sql_syntax"


QUERY = "query { orders { id } }"
MUTATION = "mutation { deleteOrder(id: 1) { id } }"


def test_reader_may_query(stack: EnvoyStack) -> None:
    assert post(stack, "/graphql", {"query": QUERY}, READER).status == 200


def test_reader_may_query_with_get(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/graphql?query=%7B%20orders%20%7B%20id%20%7D%20%7D", READER)
    assert r.status == 200


def test_reader_may_not_mutate(stack: EnvoyStack) -> None:
    r = post(stack, "/graphql", {"query": MUTATION}, READER)
    assert r.status == 403
    assert denial(r)["reason"] == "no_rule_matched"


@pytest.mark.parametrize("query", [QUERY, MUTATION])
def test_admin_may_query_and_mutate(stack: EnvoyStack, query: str) -> None:
    assert post(stack, "/graphql", {"query": query}, ADMIN).status == 200


def test_a_too_deep_graphql_query_is_refused(stack: EnvoyStack) -> None:
    deep = "query { a { b { c { d { e { f { g { h { i { j } } } } } } } } } }"
    r = post(stack, "/graphql", {"query": deep}, ADMIN)
    assert r.status == 400
    assert denial(r)["reason"] == "graphql_too_deep"


def test_the_audit_record_names_the_actions(stack: EnvoyStack) -> None:
    r = post(stack, "/api/sql", {"query": SELECT}, READER)
    did = r.upstream_headers()["x-guardrail-decision-id"]
    record = stack.audit_records(did)[did]
    assert record["actions"] == ["sql:select:orders"]
    assert "SELECT" not in json.dumps(record)  # the statement itself is not audited
