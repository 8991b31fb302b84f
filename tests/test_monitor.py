"""Monitor mode: deny rules, routes and policies that record denials instead of enforcing them.

Most policies come from the conformance file tests/conformance/monitor.yaml; its cases'
`expect_monitor` (enforced, would_deny) are checked here. Rollout shares, rate limits and
load errors use small policies of their own.
"""

from __future__ import annotations

import copy
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail_authz.engine import evaluate as evaluate_module
from guardrail_authz.engine.decision import Decision, WouldDeny
from guardrail_authz.engine.evaluate import evaluate, settle
from guardrail_authz.engine.ratelimit import LimitOutcome, LocalLimiter
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyError, PolicyLoadError
from guardrail_authz.policy.snapshot import CompiledRoute, PolicySnapshot, Rollout

CORPUS_FILE = Path(__file__).resolve().parent / "conformance" / "monitor.yaml"
CORPUS: dict[str, Any] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = list(CORPUS["cases"])


def _load_docs(directory: Path, docs: list[dict[str, Any]]) -> PolicySnapshot:
    text = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policies.yaml").write_text(text, encoding="utf-8")
    return load_directory(directory)


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    """The policies of tests/conformance/monitor.yaml, compiled."""
    return _load_docs(tmp_path_factory.mktemp("monitor"), CORPUS["policies"])


def _view(
    path: str,
    key: str | None = None,
    *,
    method: str = "GET",
    body: str = "",
    source: str = "",
    **headers: str,
) -> RequestView:
    """A request to host h; header names given with underscores (user_agent)."""
    hdrs = {name.replace("_", "-"): value for name, value in headers.items()}
    if key is not None:
        hdrs["x-api-key"] = key
    data = {"method": method, "path": path, "host": "h", "headers": hdrs, "body": body}
    if source:
        data["source_principal"] = source
    return RequestView.from_json(data)


def _route(snapshot: PolicySnapshot, path: str, method: str = "GET") -> CompiledRoute:
    view = _view(path, method=method)
    found = snapshot.index.lookup(view.host, view.port, view.segments, view.method)
    assert found is not None, path
    return found


# --- the corpus's monitor expectations ------------------------------------------------------


def test_every_corpus_case_states_its_monitor_expectations() -> None:
    """The corpus file covers monitor mode; a case without expectations would check nothing."""
    assert len(CASES) >= 20
    for case in CASES:
        assert set(case.get("expect_monitor") or {}) == {"enforced", "would_deny"}, case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case_monitor_expectations(case: dict[str, Any], snap: PolicySnapshot) -> None:
    """`enforced` and `would_deny` of each monitor.yaml case, as JSON and as objects."""
    d = evaluate(snap, RequestView.from_json(case["request"]), "corpus-decision-id")
    want = case["expect_monitor"]
    got = d.to_json()
    assert (got["enforced"], got["would_deny"]) == (want["enforced"], want["would_deny"])
    assert d.monitored == [WouldDeny(**w) for w in want["would_deny"]]
    assert d.enforced is want["enforced"]


# --- what the loader compiles ---------------------------------------------------------------


def test_modes_inherit_rule_over_route_over_policy(snap: PolicySnapshot) -> None:
    """A rule's own mode wins over its route's, a route's over its policy's."""
    plain = _route(snap, "/rule-monitor")
    assert plain.monitor is None
    assert {r.name: r.monitor for r in plain.deny_rules} == {
        "legacy": Rollout(0.0, "rulemon", "rule"),
        "blocked": None,
    }
    watched = _route(snap, "/watched")
    assert watched.monitor == Rollout(0.0, "routemon", "route")
    assert {r.name: r.monitor for r in watched.deny_rules} == {
        "no-bob": Rollout(0.0, "routemon", "route"),
        "legacy": None,
        "probe": Rollout(0.0, "routemon", "rule"),
    }
    assert all(r.monitor is None for r in watched.allow_rules)
    assert _route(snap, "/reports").monitor == Rollout(0.0, "policymon", "policy")
    assert _route(snap, "/strict").monitor is None
    inherit = _route(snap, "/inherit")
    assert inherit.deny_rules[0].monitor == Rollout(0.0, "policymon", "policy")
    assert _route(snap, "/cohort").monitor == Rollout(25.0, "cohort", "policy")
    assert _route(snap, "/cohort-beta").deny_rules[0].monitor == Rollout(25.0, "cohort", "rule")


# --- a deny rule in monitor mode --------------------------------------------------------------


def _without_monitored_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(docs)
    for doc in out:
        for route in doc["spec"].get("routes", []):
            route["rules"] = [r for r in route["rules"] if r.get("mode") != "monitor"]
    return out


def _outcome(d: Decision) -> dict[str, Any]:
    got = d.to_json()
    keys = ("allowed", "status", "reason", "rule", "principal", "deny_headers")
    out = {k: got[k] for k in keys}
    out["set"] = got["upstream_headers_set"]
    out["removed"] = sorted(got["upstream_headers_remove"])
    return out


def test_monitored_rule_decides_as_if_it_were_absent(snap: PolicySnapshot, tmp_path: Path) -> None:
    """Every combination of caller and headers gets the decision of the policy without the rule."""
    bare = _load_docs(tmp_path, _without_monitored_rules(CORPUS["policies"]))
    assert len(_route(bare, "/rule-monitor").deny_rules) == 1
    monitored = 0
    for key in ("alice-key", "bob-key", "carol-key", None):
        for extra in ({}, {"user_agent": "legacy/1"}, {"x_block": "1"}):
            view = _view("/rule-monitor", key, **extra)
            d = evaluate(snap, view, "d")
            assert _outcome(d) == _outcome(evaluate(bare, view, "d")), (key, extra)
            monitored += not d.enforced
    assert monitored == 4  # legacy/1 from each caller


def test_monitored_rule_that_does_not_match_records_nothing(snap: PolicySnapshot) -> None:
    """A monitor-mode rule that does not match leaves the decision fully enforced."""
    d = evaluate(snap, _view("/rule-monitor", "bob-key"), "d")
    assert (d.allowed, d.reason, d.monitored, d.enforced) == (False, "no_rule_matched", [], True)


# --- a route in monitor mode: found bugs and edges ------------------------------------------


def test_enforced_rule_still_denies_a_caller_with_an_invalid_key(snap: PolicySnapshot) -> None:
    """An invalid API key must not switch off a deny rule that enforces in a monitored route:
    the 401 is monitored, the legacy client is still refused."""
    d = evaluate(snap, _view("/watched", "not-a-key", user_agent="legacy/2.0"), "d")
    assert (d.allowed, d.rule) == (False, "legacy"), d.to_json()


def test_enforced_rule_still_denies_a_refused_payload(snap: PolicySnapshot) -> None:
    """A body the route's schema refuses must not switch off an enforced deny rule either."""
    view = _view(
        "/watched-orders",
        "bob-key",
        method="POST",
        body='{"item": "tea"}',
        content_type="application/json",
        user_agent="legacy/2.0",
    )
    d = evaluate(snap, view, "d")
    assert (d.allowed, d.rule) == (False, "legacy"), d.to_json()


def test_inherited_deny_rule_is_named_in_reasons(snap: PolicySnapshot) -> None:
    """A deny rule in a monitored route: the allow's reasons name what it would have denied."""
    d = evaluate(snap, _view("/watched", "bob-key"), "d")
    assert d.allowed
    assert "would_deny:denied_by_rule:no-bob" in d.reasons, d.reasons


def test_internal_error_in_a_monitored_route_fails_closed(
    snap: PolicySnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 is never turned into an allow by monitor mode."""

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(evaluate_module, "identify", broken)
    d = evaluate(snap, _view("/watched", "carol-key"), "d")
    assert (d.allowed, d.status, d.reason, d.monitored) == (False, 500, "internal_error", [])


# --- rate limits on a monitored route ---------------------------------------------------------


def test_rate_limit_on_a_monitored_route_becomes_a_would_deny(snap: PolicySnapshot) -> None:
    """The 429 of a monitored route is an allow (its mutations applied) with a would-deny."""
    runtime = Runtime(LocalLimiter())
    first = evaluate(snap, _view("/watched-limited", "bob-key"), "d1", runtime)
    assert (first.allowed, first.enforced) == (True, True)
    second = evaluate(snap, _view("/watched-limited", "bob-key"), "d2", runtime)
    assert second.allowed, second.to_json()
    assert second.monitored == [WouldDeny(429, "rate_limited", "callers", "route")]
    assert "would_deny:rate_limited" in second.reasons
    assert second.deny_headers == []
    assert ("x-guardrail-decision-id", "d2", "overwrite") in second.upstream_headers_set
    assert second.to_json()["enforced"] is False


def test_rate_limit_on_an_enforced_route_refuses(snap: PolicySnapshot) -> None:
    """The same limit where nothing is monitored: the limiter really refuses the second call."""
    runtime = Runtime(LocalLimiter())
    assert evaluate(snap, _view("/limited", "bob-key"), "d1", runtime).allowed
    second = evaluate(snap, _view("/limited", "bob-key"), "d2", runtime)
    assert (second.allowed, second.status, second.reason) == (False, 429, "rate_limited")
    assert second.monitored == []


def test_shared_store_refusal_on_a_monitored_route_is_allowed(snap: PolicySnapshot) -> None:
    """Limits counted in the shared store: a refusal settled later is monitored the same way."""
    pending = evaluate(snap, _view("/watched-limited", "bob-key"), "d", Runtime(shared=True))
    assert pending.pending is not None
    refused = LimitOutcome(False, "per-principal", 3600, '"per-principal";q=1;w=3600', "")
    d = settle(pending, refused, fail_open=False)
    assert d.allowed
    assert d.monitored == [WouldDeny(429, "rate_limited", "callers", "route")]


def test_shared_store_unavailable_is_never_monitored(snap: PolicySnapshot) -> None:
    """A 503 (limits cannot be counted, failing closed) stays a denial in monitor mode."""
    pending = evaluate(snap, _view("/watched-limited", "bob-key"), "d", Runtime(shared=True))
    d = settle(pending, None, fail_open=False)
    assert (d.allowed, d.status, d.reason) == (False, 503, "rate_limit_unavailable")


# --- enforce: N% ------------------------------------------------------------------------------

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata:
  name: {name}
spec:
{mode}  routes:
    - name: r
      match:
        paths: [/r]
      rules:
        - name: admins
          effect: allow
          when:
            roles: [admin]
"""


def _compiled(tmp_path: Path, mode: str, name: str = "p") -> PolicySnapshot:
    """One policy whose only route needs role admin; `mode` lines go at the top of spec."""
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_path))
    lines = textwrap.indent(mode, "  ")
    (directory / "p.yaml").write_text(POLICY.format(name=name, mode=lines), encoding="utf-8")
    return load_directory(directory)


def _rollout(tmp_path: Path, mode: str, name: str = "p") -> Rollout | None:
    return _route(_compiled(tmp_path, mode, name), "/r").monitor


def _principals(n: int) -> list[str]:
    return [f"spiffe://cluster.local/ns/shop/sa/caller-{i}" for i in range(n)]


def _share(rollout: Rollout, principals: list[str]) -> set[str]:
    return {p for p in principals if rollout.enforced_for(p)}


def test_enforced_share_is_stable_and_decides(tmp_path: Path) -> None:
    """A principal's answer never changes, and evaluate() denies exactly the enforced ones."""
    snapshot = _compiled(tmp_path, "mode: monitor\nenforce: 25%\n")
    rollout = _route(snapshot, "/r").monitor
    assert rollout == Rollout(25.0, "p", "policy")
    principals = _principals(200)
    enforced = _share(rollout, principals)
    assert 0 < len(enforced) < len(principals)
    for p in principals:
        views = [_view("/r", source=p) for _ in range(2)]
        got = {evaluate(snapshot, v, "d").allowed for v in views}
        assert got == {p not in enforced}, p
        assert all(rollout.enforced_for(p) == (p in enforced) for _ in range(3))
    d = evaluate(snapshot, _view("/r", source=next(iter(enforced))), "d")
    assert (d.status, d.reason, d.monitored) == (403, "no_rule_matched", [])


def test_enforced_share_grows_monotonically(tmp_path: Path) -> None:
    """A principal enforced at 10% is enforced at 20% and 50% (same policy name)."""
    principals = _principals(400)
    shares = []
    for percent in (10, 20, 50):
        rollout = _rollout(tmp_path, f"mode: monitor\nenforce: {percent}%\n")
        assert rollout is not None
        shares.append(_share(rollout, principals))
    assert shares[0]
    assert shares[0] < shares[1] < shares[2]


def test_enforced_share_is_roughly_proportional(tmp_path: Path) -> None:
    """25% of 2,000 principals: between 20% and 30% of them are enforced."""
    rollout = _rollout(tmp_path, "enforce: 25%\n")  # monitor mode is implied
    assert rollout == Rollout(25.0, "p", "policy")
    assert 400 <= len(_share(rollout, _principals(2000))) <= 600


def test_zero_percent_enforces_nobody(tmp_path: Path) -> None:
    """enforce: 0% monitors every principal, anonymous callers included."""
    snapshot = _compiled(tmp_path, "mode: monitor\nenforce: 0%\n")
    rollout = _route(snapshot, "/r").monitor
    assert rollout is not None
    assert not _share(rollout, [*_principals(2000), ""])
    assert rollout.enforced_for(None) is False
    d = evaluate(snapshot, _view("/r", source="spiffe://x/sa/y"), "d")
    assert (d.allowed, d.reason) == (True, "allowed_in_monitor_mode")


@pytest.mark.parametrize(
    "mode",
    ["mode: enforce\n", "enforce: 100%\n", "mode: monitor\nenforce: 100%\n", ""],
    ids=["mode-enforce", "100-percent", "monitor-100-percent", "no-mode"],
)
def test_fully_enforced_compiles_to_no_rollout(tmp_path: Path, mode: str) -> None:
    """100% (or mode: enforce, or nothing) is plain enforcement: no rollout is compiled."""
    snapshot = _compiled(tmp_path, mode)
    assert _route(snapshot, "/r").monitor is None
    d = evaluate(snapshot, _view("/r", source="spiffe://x/sa/y"), "d")
    assert (d.allowed, d.reason, d.monitored) == (False, "no_rule_matched", [])


def test_policies_pick_their_own_cohorts(tmp_path: Path) -> None:
    """The share is salted by the policy name: two policies at 50% enforce different callers."""
    principals = _principals(300)
    alpha = _rollout(tmp_path, "enforce: 50%\n", "alpha")
    beta = _rollout(tmp_path, "enforce: 50%\n", "beta")
    assert alpha is not None
    assert beta is not None
    a, b = _share(alpha, principals), _share(beta, principals)
    assert 100 < len(a) < 200
    assert 100 < len(b) < 200
    assert a != b


# --- load errors --------------------------------------------------------------------------

BASE = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata:
  name: p
spec:
  routes:
    - name: r
      match:
        paths: [/x]
      rules:
        - name: ok
          effect: allow
"""
RULE0 = "spec.routes[0].rules[0]"


def _errors(tmp_path: Path, text: str) -> list[PolicyError]:
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as info:
        load_directory(tmp_path)
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "found"),
    [
        pytest.param(
            BASE + "          mode: monitor\n",
            (13, f"{RULE0}.mode", "rule.deny_only"),
            id="monitor-on-an-allow-rule",
        ),
        pytest.param(
            BASE + "          enforce: 50%\n",
            (13, f"{RULE0}.enforce", "rule.deny_only"),
            id="enforce-on-an-allow-rule",
        ),
        pytest.param(
            BASE.replace("    - name: r\n", "    - name: r\n      enforce: 150%\n"),
            (8, "spec.routes[0].enforce", "mode.enforce"),
            id="over-100-percent",
        ),
        pytest.param(
            BASE.replace("spec:\n", "spec:\n  enforce: lots\n"),
            (6, "spec.enforce", "mode.enforce"),
            id="not-a-percentage",
        ),
        pytest.param(
            BASE.replace("effect: allow", "effect: deny\n          mode: enforce")
            + "          enforce: 10%\n",
            (14, f"{RULE0}.enforce", "mode.enforce"),
            id="enforce-mode-with-a-share",
        ),
        pytest.param(
            BASE.replace("    - name: r\n", "    - name: r\n      mode: sometimes\n"),
            (8, "spec.routes[0].mode", "field.choice"),
            id="unknown-mode",
        ),
    ],
)
def test_mode_errors_name_file_line_and_field(
    tmp_path: Path, text: str, found: tuple[int, str, str]
) -> None:
    """Each mistake is one error with its stable code, file, line and field."""
    errors = _errors(tmp_path, text)
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [("policy.yaml", *found)]
