"""Decision traces: evaluate(..., trace=[]) explains the route, identity, rules and outcome."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import pytest
import yaml

from guardrail_authz.engine import evaluate as evaluate_module
from guardrail_authz.engine.caller import Caller
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.explain import why_not
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.snapshot import CompiledRoute, CompiledRule, PolicySnapshot
from tests.conftest import SHIPPED_POLICIES
from tests.test_conformance import CASES, DECISION_ID, REPO, Case, _corpus_files, _read

READER = "demo-reader-key"
FRONTEND = "spiffe://cluster.local/ns/shop/sa/frontend"
RULE_LINE = re.compile(r"^(allow|deny) rule '([^']*)': (?:(matches)(.*)|no match \((.*)\))$")
CASE_IDS = [f"{c.file}::{c.name}" for c in CASES]


@pytest.fixture(scope="module")
def shipped() -> PolicySnapshot:
    """The shipped policies (policies/), compiled."""
    return load_directory(SHIPPED_POLICIES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PolicySnapshot]:
    """One snapshot per conformance corpus file, by the file's stem (as test_conformance)."""
    out: dict[str, PolicySnapshot] = {}
    for path in _corpus_files():
        data = _read(path)
        if "policy_dir" in data:
            directory = REPO / str(data["policy_dir"])
        else:
            directory = tmp_path_factory.mktemp(path.stem)
            text = yaml.safe_dump_all(data["policies"], sort_keys=False, explicit_start=True)
            (directory / "policies.yaml").write_text(text, encoding="utf-8")
        out[path.stem] = load_directory(directory)
    return out


def _traced(snapshot: PolicySnapshot, request: Mapping[str, object]) -> tuple[list[str], str]:
    """The trace lines and "allowed status reason" of the decision for one request."""
    trace: list[str] = []
    d = evaluate(snapshot, RequestView.from_json(request), DECISION_ID, trace=trace)
    return trace, f"{d.allowed} {d.status} {d.reason}"


def _get(path: str, key: str | None = None, **extra: object) -> dict[str, object]:
    headers = {"x-api-key": key} if key else {}
    return {"method": "GET", "path": path, "host": "shop.example.com", "headers": headers, **extra}


# --- traces of the shipped policies -----------------------------------------------------------


def test_reader_listing_orders_is_explained(shipped: PolicySnapshot) -> None:
    """The route, who the key belongs to, the rule that allowed and the decision."""
    trace, outcome = _traced(shipped, _get("/api/orders", READER))
    assert outcome == "True 200 allowed"
    assert trace[0] == "route: orders/read (action 'orders.read')"
    identity = [line for line in trace if line.startswith("identity:")]
    assert len(identity) == 1
    assert "principal 'reader'" in identity[0]
    assert "roles reader" in identity[0]
    assert "x-api-key" in identity[0]
    assert READER not in "\n".join(trace)  # the key itself is never shown
    rules = [line for line in trace if RULE_LINE.match(line)]
    assert rules == ["allow rule 'api-key-callers': matches"]  # the first allow decides
    assert trace[-1].startswith("decision: allow 200 allowed; rule 'api-key-callers'")
    assert "principal 'reader'" in trace[-1]
    assert trace[-1].endswith(f"policy version {shipped.version}")


def test_reader_deleting_is_told_which_condition_failed(shipped: PolicySnapshot) -> None:
    """A denial names the condition the caller did not meet."""
    request = {**_get("/api/orders/42", READER), "method": "DELETE"}
    trace, outcome = _traced(shipped, request)
    assert outcome == "False 403 no_rule_matched"
    assert trace[0] == "route: orders/delete (action 'orders.delete')"
    assert "allow rule 'admins': no match (roles: needs one of admin, caller has reader)" in trace
    assert "no allow rule matches: default deny" in trace
    assert trace[-1].startswith("decision: deny 403 no_rule_matched")


def test_frontend_by_mtls_is_explained_rule_by_rule(shipped: PolicySnapshot) -> None:
    """Each rule looked at has a line, in order, until one allows."""
    trace, outcome = _traced(shipped, _get("/api/orders/7", source_principal=FRONTEND))
    assert outcome == "True 200 allowed"
    assert f"identity: mTLS source principal {FRONTEND!r}" in trace
    rules = [line for line in trace if RULE_LINE.match(line)]
    assert rules == [
        f"allow rule 'api-key-callers': no match (principals: {FRONTEND!r} is not listed)",
        "allow rule 'shop-frontend': matches",
    ]


def test_refused_and_unmatched_requests_are_explained(shipped: PolicySnapshot) -> None:
    """Invalid keys, unknown routes and routes that need no identity say so."""
    trace, outcome = _traced(shipped, _get("/api/orders", "not-a-key"))
    assert outcome == "False 401 invalid_api_key"
    assert "identity: the API key in x-api-key is not valid" in trace
    assert not any(RULE_LINE.match(line) for line in trace)  # no rule was looked at
    trace, outcome = _traced(shipped, _get("/nowhere"))
    assert outcome == "False 403 route_not_found"
    assert trace[0].startswith("route: none matches GET")
    assert "'/nowhere'" in trace[0]
    assert trace[-1].startswith("decision: deny 403 route_not_found")
    trace, _ = _traced(shipped, _get("/public/ping"))
    assert "identity: not looked at (no rule of this route needs it)" in trace


def test_payload_refusal_is_explained(shipped: PolicySnapshot) -> None:
    """Payload checks have their own line, refused or accepted."""
    request = {
        "method": "POST",
        "path": "/api/orders",
        "host": "h",
        "headers": {"x-api-key": READER, "content-type": "application/json"},
        "body": '{"item": "x\' OR \'1\'=\'1", "quantity": 1}',
    }
    trace, outcome = _traced(shipped, request)
    assert outcome == "False 403 sqli_detected"
    assert "payload: refused 403 sqli_detected" in trace
    request["body"] = '{"item": "tea", "quantity": 1}'
    trace, outcome = _traced(shipped, request)
    assert outcome == "True 200 allowed"
    assert "payload: accepted (actions: none)" in trace


# --- monitor mode in traces (tests/conformance/monitor.yaml) ----------------------------------


def _on(path: str, key: str, **headers: str) -> dict[str, object]:
    return {"method": "GET", "path": path, "host": "h", "headers": {"x-api-key": key, **headers}}


def test_monitor_overrides_are_explained(corpus: dict[str, PolicySnapshot]) -> None:
    """Monitor mode adds a line after the denial it overrides (or enforces for this caller)."""
    snap = corpus["monitor"]
    trace, outcome = _traced(snap, _on("/rule-monitor", "alice-key", **{"user-agent": "legacy/1"}))
    assert outcome == "True 200 allowed"
    i = trace.index("deny rule 'legacy': matches → 403 legacy_client")
    assert (
        trace[i + 1]
        == "deny rule 'legacy': monitor mode (rule, monitor only) → would deny, not enforced"
    )
    assert trace[-1].startswith("decision: allow 200 allowed; rule 'staff'")
    assert "not enforced: legacy_client" in trace[-1]

    trace, outcome = _traced(snap, _on("/watched", "carol-key"))
    assert outcome == "True 200 allowed_in_monitor_mode"
    assert trace[-2] == (
        "route guardrail (403 no_rule_matched): monitor mode (route, monitor only)"
        " → would deny, not enforced"
    )
    assert "not enforced: no_rule_matched" in trace[-1]

    trace, outcome = _traced(snap, _on("/cohort", "bob-key"))  # bob is in the enforced 25%
    assert outcome == "False 403 no_rule_matched"
    assert trace[-2] == (
        "route guardrail (403 no_rule_matched): monitor mode (policy, 25% enforced),"
        " this principal is enforced"
    )
    assert "not enforced" not in trace[-1]


# --- why_not, condition by condition ----------------------------------------------------------

WHY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: why}
spec:
  routes:
    - name: w
      match: {paths: [/w]}
      actions: {from: sql, field: q}
      rules:
        - {name: signed-in, effect: allow, when: {authenticated: true}}
        - {name: anonymous, effect: allow, when: {authenticated: false}}
        - {name: listed, effect: allow, when: {principals: [alice, "svc-*"]}}
        - {name: mesh, effect: allow, when: {sourcePrincipals: ["spiffe://c/ns/*/sa/reporter"]}}
        - {name: ops, effect: allow, when: {roles: [ops, admin]}}
        - {name: tenant, effect: allow, when: {headers: [{name: X-Tenant, equals: acme}]}}
        - {name: org, effect: allow, when: {claims: [{name: org.id, equals: "7"}]}}
        - {name: reads, effect: allow, when: {actions: ["sql:select:*"]}}
        - {name: page, effect: allow, when: {query: [{name: page, prefix: "1"}]}}
        - {name: both, effect: allow, when: {principals: [alice], roles: [admin]}}
        - {name: drops, effect: deny, when: {actions: ["sql:drop:*"]}}
"""


@pytest.fixture(scope="module")
def why_route(tmp_path_factory: pytest.TempPathFactory) -> CompiledRoute:
    """The route of WHY: one rule per kind of condition."""
    directory = tmp_path_factory.mktemp("why")
    (directory / "why.yaml").write_text(WHY, encoding="utf-8")
    snap = load_directory(directory)
    found = snap.index.lookup("h", 0, ["w"], "GET")
    assert found is not None
    return found


def _rule(route: CompiledRoute, name: str) -> CompiledRule:
    return next(r for r in (*route.allow_rules, *route.deny_rules) if r.name == name)


def _caller(
    principal: str | None = None,
    roles: tuple[str, ...] = (),
    source: str | None = None,
    claims: dict[str, object] | None = None,
    actions: tuple[str, ...] = (),
) -> Caller:
    c = Caller(principal, frozenset(roles), ",".join(sorted(roles)), source)
    c.claims, c.actions = claims, actions
    return c


Make = Callable[[], Caller]
WHY_CASES: list[tuple[str, str, Make, str, str]] = [
    ("needs-auth", "signed-in", _caller, "/w", "authenticated: needs an authenticated caller"),
    ("has-auth", "signed-in", lambda: _caller("bob"), "/w", ""),
    (
        "needs-anon",
        "anonymous",
        lambda: _caller("bob"),
        "/w",
        "authenticated: needs an anonymous caller",
    ),
    ("not-listed", "listed", lambda: _caller("bob"), "/w", "principals: 'bob' is not listed"),
    ("no-principal", "listed", _caller, "/w", "principals: none is not listed"),
    ("glob-listed", "listed", lambda: _caller("svc-orders"), "/w", ""),
    (
        "source",
        "mesh",
        lambda: _caller(source="spiffe://c/ns/a/sa/web"),
        "/w",
        "sourcePrincipals: 'spiffe://c/ns/a/sa/web' is not listed",
    ),
    ("source-glob", "mesh", lambda: _caller(source="spiffe://c/ns/a/sa/reporter"), "/w", ""),
    (
        "roles",
        "ops",
        lambda: _caller("bob", ("staff", "reader")),
        "/w",
        "roles: needs one of admin,ops, caller has reader,staff",
    ),
    (
        "no-roles",
        "ops",
        lambda: _caller("bob"),
        "/w",
        "roles: needs one of admin,ops, caller has none",
    ),
    ("one-role", "ops", lambda: _caller("bob", ("ops",)), "/w", ""),
    ("header", "tenant", _caller, "/w", "headers: x-tenant equals 'acme' does not hold"),
    (
        "claim",
        "org",
        lambda: _caller("bob", claims={"org": {"id": "8"}}),
        "/w",
        "claims: org.id equals does not hold",
    ),
    ("claim-ok", "org", lambda: _caller("bob", claims={"org": {"id": "7"}}), "/w", ""),
    ("no-actions", "reads", _caller, "/w", "actions: the request has no actions"),
    (
        "one-action-not-allowed",
        "reads",
        lambda: _caller(actions=("sql:select:t", "sql:delete:t")),
        "/w",
        "actions: sql:delete:t not allowed",
    ),
    ("all-actions", "reads", lambda: _caller(actions=("sql:select:t",)), "/w", ""),
    (
        "deny-needs-one-action",
        "drops",
        lambda: _caller(actions=("sql:select:t",)),
        "/w",
        "actions: none of sql:select:t listed",
    ),
    ("deny-any-action", "drops", lambda: _caller(actions=("sql:select:t", "sql:drop:t")), "/w", ""),
    ("query", "page", _caller, "/w?page=2", "query: page prefix '1' does not hold"),
    ("query-ok", "page", _caller, "/w?page=12", ""),
    (
        "first-failing-first",
        "both",
        lambda: _caller("bob"),
        "/w",
        "principals: 'bob' is not listed",
    ),
    (
        "second-failing",
        "both",
        lambda: _caller("alice"),
        "/w",
        "roles: needs one of admin, caller has none",
    ),
]


@pytest.mark.parametrize(
    ("rule_name", "make", "path", "expected"),
    [pytest.param(r, m, p, e, id=i) for i, r, m, p, e in WHY_CASES],
)
def test_why_not_names_the_first_failing_condition(
    why_route: CompiledRoute, rule_name: str, make: Make, path: str, expected: str
) -> None:
    """why_not gives the evaluator's first failing check; "" exactly when the rule matches."""
    rule, caller = _rule(why_route, rule_name), make()
    view = RequestView(method="GET", raw_path=path, host="h", headers={"x-tenant": "other"})
    assert why_not(rule, caller, view) == expected
    assert evaluate_module._matches(rule, caller, view) is (expected == "")


# --- over the whole conformance corpus --------------------------------------------------------


def test_why_not_is_empty_exactly_when_the_evaluator_matches(
    corpus: dict[str, PolicySnapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rule check the evaluator makes over the corpus agrees with why_not."""
    original = evaluate_module._matches
    checks: list[bool] = []
    disagree: list[str] = []

    def checked(rule: CompiledRule, caller: Caller, view: RequestView) -> bool:
        result = original(rule, caller, view)
        reason = why_not(rule, caller, view)
        checks.append(result)
        if result != (reason == ""):
            disagree.append(f"{rule.name}: matches={result} why_not={reason!r}")
        return result

    monkeypatch.setattr(evaluate_module, "_matches", checked)
    for case in CASES:
        evaluate(corpus[case.file], RequestView.from_json(case.request), DECISION_ID)
    assert not disagree, disagree
    assert checks.count(True) >= 50
    assert checks.count(False) >= 50


def _rule_lines(trace: list[str]) -> list[tuple[str, str, bool, str, str]]:
    """(kind, name, matched, why it did not match, what a match does) of each rule line."""
    out: list[tuple[str, str, bool, str, str]] = []
    for line in trace:
        found = RULE_LINE.match(line)
        if found is not None:
            kind, name, matched, then, why = found.groups()
            out.append((kind, name, matched is not None, why or "", then or ""))
    return out


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_trace_agrees_with_the_decision(
    case: Case, corpus: dict[str, PolicySnapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule lines are the evaluator's checks in order; the deciding rule's line says
    matches; the last line states the decision; tracing does not change the decision."""
    snap = corpus[case.file]
    untraced = evaluate(snap, RequestView.from_json(case.request), DECISION_ID)
    original = evaluate_module._matches
    calls: list[tuple[str, str, bool]] = []

    def recorded(rule: CompiledRule, caller: Caller, v: RequestView) -> bool:
        result = original(rule, caller, v)
        calls.append(("allow" if rule.allow else "deny", rule.name, result))
        return result

    monkeypatch.setattr(evaluate_module, "_matches", recorded)
    trace: list[str] = []
    d = evaluate(snap, RequestView.from_json(case.request), DECISION_ID, trace=trace)
    assert untraced.to_json() == d.to_json()
    assert untraced.body == d.body

    verdict = "allow" if d.allowed else "deny"
    assert trace[-1].startswith(f"decision: {verdict} {d.status} {d.reason}"), trace
    assert sum(line.startswith("decision:") for line in trace) == 1
    assert trace[0].startswith(("route: ", "request refused before any rule: ")), trace
    lines = _rule_lines(trace)
    assert [(k, n, m) for k, n, m, _, _ in lines] == calls
    assert all(bool(why) != matched for _, _, matched, why, _ in lines), lines
    allow_lines = [(n, m) for k, n, m, _, _ in lines if k == "allow"]
    if d.allowed and d.rule is not None:
        assert allow_lines[-1] == (d.rule, True)
        assert not any(m for _, m in allow_lines[:-1])
    if not d.allowed and d.rule is not None and d.status != 429:
        assert lines[-1] == ("deny", d.rule, True, "", f" → {d.status} {d.reason}")
    if d.reason in ("no_rule_matched", "no_identity"):
        assert not any(m for _, m in allow_lines)
        assert "no allow rule matches: default deny" in trace


def test_corpus_cases_are_traced_at_all() -> None:
    """The corpus the two tests above walk is the full one, monitor cases included."""
    assert len(CASES) >= 200
    assert {c.file for c in CASES} >= {"shipped", "rules", "payload", "monitor"}
