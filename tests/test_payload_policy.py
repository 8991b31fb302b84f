"""Payload sections of a policy: load errors with file, line and field; OpenAPI import;
evaluation of bodies, schemas, detectors and actions through evaluate()."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import BadRequestError, RequestView
from guardrail_authz.payload.body import BodyLimits, inspectable, keys, parse_body, strings
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openapi"
HEADER = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: p}
spec:
  routes:
    - name: r
      match: {paths: [/x]}
      rules: [{name: ok, effect: allow}]
"""  # the route's fields go after line 8


def _route(lines: str) -> str:
    return HEADER + "".join(f"      {line}\n" for line in lines.strip("\n").split("\n"))


def _errors(tmp_path: Path, text: str) -> set[tuple[int, str, str]]:
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as err:
        load_directory(tmp_path)
    return {(e.line, e.field, e.code) for e in err.value.errors}


R = "spec.routes[0]"


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        ("body: {contentTypes: [json]}", (9, f"{R}.body.contentTypes", "body.content_type")),
        ("body: {maxBytes: 0}", (9, f"{R}.body.maxBytes", "field.range")),
        ("body: {partial: keep}", (9, f"{R}.body.partial", "field.choice")),
        ("schema: {strict: true}", (9, f"{R}.schema", "schema.empty")),
        ("schema: {body: {type: objekt}}", (9, f"{R}.schema.body", "schema.invalid")),
        ("schema: {body: [1]}", (9, f"{R}.schema.body", "field.type")),
        (
            "schema: {headers: {properties: {X-Tenant: {type: string}}}}",
            (9, f"{R}.schema.headers", "schema.header"),
        ),
        ("inspect: {detectors: [sqlx]}", (9, f"{R}.inspect.detectors", "inspect.detector")),
        (
            "inspect: {detectors: [sqli], monitor: [xss]}",
            (9, f"{R}.inspect.monitor", "inspect.monitor"),
        ),
        ("inspect: {mode: audit}", (9, f"{R}.inspect.mode", "field.choice")),
        ("inspect: {fields: [{path: body.a}]}", (9, f"{R}.inspect.fields[0]", "inspect.field")),
        ("actions: {from: soap}", (9, f"{R}.actions.from", "field.choice")),
        ("actions: {field: q}", (9, f"{R}.actions", "field.required")),
        ("actions: {from: sql}", (9, f"{R}.actions", "actions.field")),
        ("actions: {from: graphql, field: q}", (9, f"{R}.actions.field", "actions.field")),
        (
            "actions: {from: sql, field: q, dialect: cobol}",
            (9, f"{R}.actions.dialect", "actions.dialect"),
        ),
        ("actions: {from: sql, field: q, maxDepth: 3}", (9, f"{R}.actions", "actions.limits")),
        ("actions: {from: sql, field: 'a b'}", (9, f"{R}.actions.field", "actions.field")),
    ],
)
def test_payload_section_errors(tmp_path: Path, lines: str, found: tuple[int, str, str]) -> None:
    assert found in _errors(tmp_path, _route(lines))


def test_rule_with_actions_needs_an_extractor(tmp_path: Path) -> None:
    text = HEADER.replace(
        "rules: [{name: ok, effect: allow}]",
        "rules: [{name: ok, effect: allow, when: {actions: ['sql:*']}}]",
    )
    assert (8, f"{R}.rules[0].when.actions", "rule.actions") in _errors(tmp_path, text)


def _load(tmp_path: Path, text: str, *extra: Path) -> PolicySnapshot:
    (tmp_path / "policy.yaml").write_text(text)
    for path in extra:
        shutil.copy(path, tmp_path / path.name)
    return load_directory(tmp_path)


OPENAPI_POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: orders-api}
spec:
  openapi:
    file: orders.openapi.yaml
    strict: true
    rules:
      - {name: anyone, effect: allow}
"""


def _decide(snapshot: PolicySnapshot, method: str, path: str, body: object = None,
            headers: dict[str, str] | None = None) -> dict[str, object]:  # fmt: skip
    raw = b"" if body is None else json.dumps(body).encode()
    h = {"content-type": "application/json", **(headers or {})} if raw else dict(headers or {})
    view = RequestView(method=method, raw_path=path, host="api", headers=h, body=raw)
    return evaluate(snapshot, view, "did").to_json()


def test_openapi_operations_become_routes(tmp_path: Path) -> None:
    snapshot = _load(tmp_path, OPENAPI_POLICY, FIXTURES / "orders.openapi.yaml")
    order = {"items": [{"sku": "A-1", "quantity": 2}]}
    ok = _decide(snapshot, "POST", "/orders", order)
    assert (ok["allowed"], ok["route"], ok["action"]) == (
        True,
        "orders-api/createorder",
        "createOrder",
    )
    missing = _decide(snapshot, "POST", "/orders", {"note": "x"})
    assert (missing["status"], missing["reason"]) == (400, "schema_violation")
    extra = _decide(snapshot, "POST", "/orders", {**order, "coupon": "FREE"})
    assert extra["status"] == 400  # strict: only what the API declares
    nested = _decide(snapshot, "POST", "/orders", {"items": [{"sku": "A", "quantity": 0}]})
    assert nested["status"] == 400
    assert _decide(snapshot, "POST", "/orders")["status"] == 400  # requestBody is required


def test_openapi_parameters_are_checked(tmp_path: Path) -> None:
    snapshot = _load(tmp_path, OPENAPI_POLICY, FIXTURES / "orders.openapi.yaml")
    tenant = {"x-tenant": "shop-1"}
    assert _decide(snapshot, "GET", "/orders?limit=10", headers=tenant)["allowed"] is True
    assert _decide(snapshot, "GET", "/orders?limit=1000", headers=tenant)["status"] == 400
    assert _decide(snapshot, "GET", "/orders?limit=10")["status"] == 400  # header required
    bad = _decide(snapshot, "GET", "/orders", headers={"x-tenant": "Shop 1"})
    assert bad["status"] == 400


def test_openapi_document_is_not_read_as_a_policy_and_changes_the_version(tmp_path: Path) -> None:
    first = _load(tmp_path, OPENAPI_POLICY, FIXTURES / "orders.openapi.yaml")
    doc = tmp_path / "orders.openapi.yaml"
    doc.write_text(doc.read_text().replace("maximum: 100\n", "maximum: 50\n"))
    second = load_directory(tmp_path)
    assert first.version != second.version
    assert doc in second.watched


def test_openapi_missing_document_is_a_load_error(tmp_path: Path) -> None:
    found = _errors(tmp_path, OPENAPI_POLICY)
    assert (6, "spec.openapi.file", "openapi.file") in found


def test_openapi_document_errors_name_the_document(tmp_path: Path) -> None:
    (tmp_path / "orders.openapi.yaml").write_text("openapi: 2.0\ninfo: {}\npaths: {}\n")
    (tmp_path / "policy.yaml").write_text(OPENAPI_POLICY)
    with pytest.raises(PolicyLoadError) as err:
        load_directory(tmp_path)
    assert {e.file for e in err.value.errors} == {"orders.openapi.yaml"}


NOTES = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: notes}
spec:
  inspect: {detectors: all}
  routes:
    - name: notes
      match: {methods: [POST], paths: [/notes]}
      body: {maxDepth: 16, maxElements: 2000}
      rules: [{name: anyone, effect: allow}]
    - name: plain
      match: {paths: [/plain]}
      inspect: {detectors: none}
      rules: [{name: anyone, effect: allow}]
"""


def test_policy_inspect_is_the_routes_default(tmp_path: Path) -> None:
    snapshot = _load(tmp_path, NOTES)
    attack = {"q": "<script>alert(1)</script>"}
    assert _decide(snapshot, "POST", "/notes", attack)["reason"] == "xss_detected"
    assert _decide(snapshot, "POST", "/plain", attack)["allowed"] is True


def _documents(*, infinity: bool) -> st.SearchStrategy[object]:
    """Random JSON-able documents (floats may include infinities, which JSON refuses)."""
    floats = st.floats(allow_nan=False, allow_infinity=infinity)
    scalars = st.none() | st.booleans() | st.integers() | floats | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    )


JSON = _documents(infinity=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON, raw=st.binary(max_size=64))
def test_random_bodies_never_crash_the_evaluator(
    doc: object, raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    snapshot = _snapshot(tmp_path_factory)
    for body in (json.dumps(doc).encode(), raw):
        view = RequestView(
            method="POST", raw_path="/notes", host="h",
            headers={"content-type": "application/json"}, body=body,
        )  # fmt: skip
        d = evaluate(snapshot, view, "did")
        assert d.status in (200, 400, 403), d.reason
        assert d.reason != "internal_error"


_SNAPSHOTS: dict[str, PolicySnapshot] = {}


def _snapshot(factory: pytest.TempPathFactory) -> PolicySnapshot:
    if "notes" not in _SNAPSHOTS:
        directory = factory.mktemp("notes")
        (directory / "policy.yaml").write_text(NOTES)
        _SNAPSHOTS["notes"] = load_directory(directory)
    return _SNAPSHOTS["notes"]


def test_inspectable_gives_every_string_and_the_keys_detectors_can_fire_on() -> None:
    doc = {
        "a": "x",
        "b": [{"c": "y", "$ne": 1}, "z", 3, None],
        "\u0024where": "w",
        "\uff04gt": {"d": "v"},
        "plain key": "p",
        "e%0d%0aSet-Cookie": 1,
    }
    raw = json.dumps(doc).encode()
    body = parse_body(raw, "application/json", BodyLimits())
    values, found = inspectable(body)
    assert sorted(values) == sorted(strings(body))
    assert sorted(k for _, k in found) == sorted(["$ne", "$where", "\uff04gt", "e%0d%0aSet-Cookie"])
    every = {k for _, k in keys(body)}
    assert {k for _, k in found} <= every


def _notes(tmp_path_factory: pytest.TempPathFactory, body: bytes) -> str:
    view = RequestView(
        method="POST", raw_path="/notes", host="h",
        headers={"content-type": "application/json"}, body=body,
    )  # fmt: skip
    return evaluate(_snapshot(tmp_path_factory), view, "did").reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 16 + b"]" * 16, "allowed"),  # maxDepth: 16
        (b"[" * 17 + b"]" * 17, "json_too_deep"),
        (b'{"a":' * 17 + b"1" + b"}" * 17, "json_too_deep"),
        (b"[" * 50_000 + b"]" * 50_000, "json_too_deep"),  # deeper than Python recurses
        (json.dumps(list(range(1999))).encode(), "allowed"),  # maxElements: 2000 with the root
        (json.dumps(list(range(2000))).encode(), "json_too_many_elements"),
        (json.dumps({str(i): [i] for i in range(999)}).encode(), "allowed"),  # 1 + 999 + 999
        (json.dumps({str(i): [i] for i in range(1000)}).encode(), "json_too_many_elements"),
    ],
)
def test_inspected_routes_bound_the_json_shape_while_walking(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, reason: str
) -> None:
    assert _notes(tmp_path_factory, body) == reason


SMALL = BodyLimits(max_depth=3, max_elements=12)


FINITE_JSON = _documents(infinity=False)


@settings(max_examples=400, deadline=None)
@given(doc=FINITE_JSON)
def test_walking_bounds_the_shape_as_the_prescan_does(doc: object) -> None:
    """Parsing with the byte pre-scan, and parsing then walking, refuse the same valid
    documents for the same reason (for invalid JSON the two may name the other fault)."""
    raw = json.dumps(doc).encode()

    def outcome(walk: bool) -> str:
        try:
            body = parse_body(raw, "application/json", SMALL, walk=walk)
            if walk:
                inspectable(body, SMALL)
        except BadRequestError as bad:
            return bad.reason
        return "ok"

    assert outcome(walk=True) == outcome(walk=False)


PATHS = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: paths}
spec:
  routes:
    - name: one
      match: {paths: ["/orders/{id}/lines/{line}"]}
      schema:
        path:
          type: object
          properties:
            id: {type: integer, minimum: 1}
            line: {type: string, pattern: "^[a-z]+$"}
      rules: [{name: anyone, effect: allow}]
"""


@pytest.mark.parametrize(
    ("path", "field", "rule"),
    [
        ("/orders/42/lines/abc", None, None),
        ("/orders/0/lines/abc", "path.id", "minimum"),
        ("/orders/x/lines/abc", "path.id", "type"),
        ("/orders/7/lines/ABC", "path.line", "pattern"),
    ],
)
def test_path_parameters_are_typed_by_the_path_schema(
    tmp_path: Path, path: str, field: str | None, rule: str | None
) -> None:
    d = _decide(_load(tmp_path, PATHS), "GET", path)
    if field is None:
        assert d["allowed"] is True
    else:
        assert (d["status"], d["reason"]) == (400, "schema_violation")
        reasons = d["reasons"]
        assert isinstance(reasons, list)
        assert f"field:{field}" in reasons
        assert f"rule:{rule}" in reasons


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('["/orders/{id}/lines/{line}", "/o/{id}"]', "exactly one path template"),
        ('["/orders/{id}/lines/{n}"]', "line, not parameters"),
    ],
)
def test_path_schema_needs_one_template_naming_its_parameters(
    tmp_path: Path, change: str, message: str
) -> None:
    text = PATHS.replace('["/orders/{id}/lines/{line}"]', change)
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as err:
        load_directory(tmp_path)
    found = [e for e in err.value.errors if e.code == "schema.path"]
    assert found, err.value.render()
    assert message in found[0].message
    assert found[0].field == "spec.routes[0].schema.path"


def test_openapi_path_parameters_are_checked(tmp_path: Path) -> None:
    doc = tmp_path / "orders.openapi.yaml"
    doc.write_text(
        (FIXTURES / "orders.openapi.yaml")
        .read_text()
        .replace("format: uuid", "pattern: '^[0-9a-f-]{36}$'")
    )
    snapshot = _load(tmp_path, OPENAPI_POLICY)
    uuid = "3f2a9c0d-1b4e-4c1a-9f00-0123456789ab"
    assert _decide(snapshot, "GET", f"/orders/{uuid}")["allowed"] is True
    bad = _decide(snapshot, "GET", "/orders/42")
    assert (bad["status"], bad["reason"]) == (400, "schema_violation")
    assert "field:path.id" in str(bad["reasons"])
