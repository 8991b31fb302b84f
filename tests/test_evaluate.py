"""evaluate() below the servicer: failure modes, decision ids, the JSON shape, snapshot versions."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from guardrail_authz.engine.decision import Decision, DecisionIds
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.matchers import CompiledCondition
from guardrail_authz.policy.pathtrie import ANY_METHOD
from guardrail_authz.policy.snapshot import CompiledRoute, PolicySnapshot, RouteIndex
from guardrail_authz.policy.source import MatchOp

REPO = Path(__file__).resolve().parent.parent
ALICE_SHA = "72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20"  # alice-key
SECRET = "internal-detail-7f3a"


def _policy(fail_mode: str = "closed", on_allow: str = "") -> str:
    return f"""\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {{name: p, version: "3"}}
spec:
  failMode: {fail_mode}
  apiKeys:
    keys: [{{sha256: {ALICE_SHA}, principal: alice, roles: [staff]}}]
  routes:
    - name: r
      action: things.read
      match: {{paths: [/x]}}
      rules:
        - name: tenant
          effect: allow
          when:
            authenticated: true
            headers: [{{name: x-tenant, equals: acme}}]
{on_allow}"""


def _load(directory: Path, text: str) -> PolicySnapshot:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "p.yaml").write_text(text, encoding="utf-8")
    return load_directory(directory)


def _view(path: str = "/x", **headers: str) -> RequestView:
    return RequestView(method="GET", raw_path=path, host="h", headers=headers)


ALICE = {"x-api-key": "alice-key", "x-tenant": "acme"}


# --- internal errors -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Exploding(CompiledCondition):
    """A condition whose evaluation fails, as a bug in a matcher would."""

    def holds(self, actual: str | None) -> bool:
        raise RuntimeError(SECRET)


def _sabotage(snapshot: PolicySnapshot) -> PolicySnapshot:
    """The same snapshot with route /x's rule condition replaced by one that raises."""
    route = snapshot.index.lookup("h", 0, ["x"], "GET")
    assert route is not None
    rule = route.allow_rules[0]
    boom = _Exploding("x-tenant", MatchOp.EQUALS, "acme", None)
    broken = replace(route, allow_rules=(replace(rule, headers=(boom,)),))
    index = RouteIndex()
    index.trie("*", 0).insert(("x",), ANY_METHOD, broken)
    return replace(snapshot, index=index)


def test_internal_error_fails_closed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An exception inside evaluation is a 500 deny with a generic message and a logged trace."""
    snapshot = _sabotage(_load(tmp_path, _policy("closed")))
    with caplog.at_level(logging.ERROR, logger="guardrail_authz.engine.evaluate"):
        d = evaluate(snapshot, _view(**ALICE), "id-1")
    assert (d.allowed, d.status, d.reason) == (False, 500, "internal_error")
    assert (d.policy, d.route, d.action) == ("p", "p/r", "things.read")
    assert json.loads(d.body) == {
        "error": "internal_error",
        "reason": "internal_error",
        "message": "the guardrail could not evaluate this request",
        "decision_id": "id-1",
    }
    assert SECRET not in d.body
    assert SECRET not in json.dumps(d.to_json())
    assert ("x-guardrail-reason", "internal_error") in d.deny_headers
    assert not d.upstream_headers_set
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "id-1" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == SECRET


def test_internal_error_fails_open_when_policy_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """failMode: open allows, still stamping the decision id and stripping keys and spoofs."""
    snapshot = _sabotage(_load(tmp_path, _policy("open")))
    view = _view(**ALICE, **{"x-guardrail-principal": "admin", "x-guardrail-decision-id": "f"})
    with caplog.at_level(logging.ERROR):
        d = evaluate(snapshot, view, "id-2")
    assert (d.allowed, d.status, d.reason) == (True, 200, "internal_error_fail_open")
    assert d.reasons == ["internal_error_fail_open"]
    assert (d.policy, d.route, d.action, d.principal) == ("p", "p/r", "things.read", None)
    assert d.upstream_headers_set == [("x-guardrail-decision-id", "id-2", "overwrite")]
    assert sorted(d.upstream_headers_remove) == ["x-api-key", "x-guardrail-principal"]
    assert d.body == ""
    assert any(r.exc_info for r in caplog.records)


class _ExplodingHeaders(Mapping[str, str]):
    """Headers whose every access fails, so even the fail-open decision cannot be built."""

    def __getitem__(self, key: str) -> str:
        raise RuntimeError(SECRET)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(SECRET)

    def __len__(self) -> int:
        return 1


def test_fail_open_that_fails_again_fails_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the fail-open answer itself cannot be built, the answer is the fail-closed deny."""
    snapshot = _load(tmp_path, _policy("open"))
    view = RequestView(method="GET", raw_path="/x", host="h", headers=_ExplodingHeaders())
    with caplog.at_level(logging.ERROR):
        d = evaluate(snapshot, view, "id-3")
    assert (d.allowed, d.status, d.reason, d.route) == (False, 500, "internal_error", "p/r")
    assert len([r for r in caplog.records if r.exc_info]) == 2


class _ExplodingIndex(RouteIndex):
    """A route index whose lookup fails."""

    def lookup(
        self, host: str, port: int, segments: list[str], method: str
    ) -> CompiledRoute | None:
        raise RuntimeError(SECRET)


def test_error_before_a_route_is_found_fails_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a route there is no failMode to honour: always closed."""
    snapshot = replace(_load(tmp_path, _policy("open")), index=_ExplodingIndex())
    with caplog.at_level(logging.ERROR):
        d = evaluate(snapshot, _view(**ALICE), "id-4")
    assert (d.allowed, d.status, d.reason, d.route, d.policy) == (
        False,
        500,
        "internal_error",
        None,
        None,
    )


def test_bad_request_is_not_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused path is a 400 decision, not logged as a failure, even with failMode open."""
    snapshot = _load(tmp_path, _policy("open"))
    with caplog.at_level(logging.ERROR):
        d = evaluate(snapshot, _view("/x/%2e%2e", **ALICE), "id-5")
    assert (d.allowed, d.status, d.reason) == (False, 400, "ambiguous_path")
    assert json.loads(d.body)["error"] == "bad_request"
    assert not caplog.records


def test_path_too_long(tmp_path: Path) -> None:
    """An over-long path is 414 with the uri_too_long error."""
    snapshot = _load(tmp_path, _policy())
    d = evaluate(snapshot, _view("/x/" + "a" * 20_000), "id-6")
    assert (d.status, d.reason) == (414, "path_too_long")
    assert json.loads(d.body)["error"] == "uri_too_long"


# --- decisions -----------------------------------------------------------------------------------


def test_allowed_decision_and_mutation_order(tmp_path: Path) -> None:
    """Policy headers first, then principal, roles and decision id; keys and spoofs removed."""
    on_allow = (
        "      onAllow:\n"
        "        requestHeaders:\n"
        "          set: [{name: x-b, value: '2'}, {name: x-a, value: '1', mode: append}]\n"
        "          remove: [x-drop]\n"
    )
    snapshot = _load(tmp_path, _policy(on_allow=on_allow))
    view = _view(**ALICE, **{"x-guardrail-roles": "admin", "x-guardrail-principal": "eve"})
    d = evaluate(snapshot, view, "id-7")
    assert (d.allowed, d.status, d.reason, d.rule, d.principal) == (
        True,
        200,
        "allowed",
        "tenant",
        "alice",
    )
    assert d.upstream_headers_set == [
        ("x-b", "2", "overwrite"),
        ("x-a", "1", "overwrite"),  # append resolved: no inbound x-a
        ("x-guardrail-principal", "alice", "overwrite"),
        ("x-guardrail-roles", "staff", "overwrite"),
        ("x-guardrail-decision-id", "id-7", "overwrite"),
    ]
    assert d.upstream_headers_remove == ["x-drop", "x-api-key"]
    assert d.deny_headers == []
    assert d.body == ""
    assert d.policy_version == snapshot.version


def test_denied_decision_shape(tmp_path: Path) -> None:
    """A deny carries a compact JSON body, the decision id and reason headers, no mutations."""
    snapshot = _load(tmp_path, _policy())
    d = evaluate(snapshot, _view(), "id-8")
    assert (d.allowed, d.status, d.reason, d.message) == (
        False,
        401,
        "no_identity",
        "this action needs an identity (API key or mTLS)",
    )
    assert d.body == (
        '{"error":"unauthenticated","reason":"no_identity",'
        '"message":"this action needs an identity (API key or mTLS)","decision_id":"id-8"}'
    )
    assert d.deny_headers == [
        ("content-type", "application/json"),
        ("x-guardrail-decision-id", "id-8"),
        ("x-guardrail-reason", "no_identity"),
        ("www-authenticate", 'APIKey realm="guardrail-authz", header="x-api-key"'),
    ]
    assert d.upstream_headers_set == []
    assert d.upstream_headers_remove == []


def test_evaluate_is_pure(tmp_path: Path) -> None:
    """The same request gives the same decision (but for the id) and leaves the view intact."""
    snapshot = _load(tmp_path, _policy())
    headers = dict(ALICE)
    view = _view(**headers)
    first = evaluate(snapshot, view, "a").to_json()
    second = evaluate(snapshot, view, "b").to_json()
    for d in (first, second):
        d.pop("decision_id")
        d["upstream_headers_set"].pop("x-guardrail-decision-id")
    assert first == second
    assert dict(view.headers) == ALICE


TO_JSON_KEYS = {
    "allowed",
    "status",
    "reason",
    "reasons",
    "decision_id",
    "policy_version",
    "policy",
    "route",
    "action",
    "principal",
    "rule",
    "upstream_headers_set",
    "upstream_headers_modes",
    "upstream_headers_remove",
    "response_headers_add",
    "query_parameters_set",
    "query_parameters_remove",
    "deny_headers",
    "actions",
    "credential",
    "enforced",
    "would_deny",
}


def test_to_json_keys_and_types() -> None:
    """The offline-evaluation JSON object has a fixed set of keys and is JSON-serialisable."""
    d = Decision(True, 200, "allowed", "id", "v", policy="p", route="p/r", action="a")
    d.upstream_headers_set.append(("x-a", "1", "append"))
    d.response_headers_add.append(("x-r", "2", "overwrite"))
    d.query_set.append(("q", "3"))
    d.query_remove.append("z")
    d.deny_headers.append(("x-d", "4"))
    d.actions = ("sql:select:orders",)
    data = d.to_json()
    assert set(data) == TO_JSON_KEYS
    assert data["actions"] == ["sql:select:orders"]
    assert data["upstream_headers_set"] == {"x-a": "1"}
    assert data["upstream_headers_modes"] == {"x-a": "append"}
    assert data["response_headers_add"] == {"x-r": "2"}
    assert data["query_parameters_set"] == {"q": "3"}
    assert data["query_parameters_remove"] == ["z"]
    assert data["deny_headers"] == {"x-d": "4"}
    assert json.loads(json.dumps(data)) == data


def test_to_json_returns_copies() -> None:
    """Changing the JSON object does not change the decision."""
    d = Decision(False, 403, "r", "id", "v")
    d.reasons.append("r")
    d.to_json()["reasons"].append("x")
    assert d.reasons == ["r"]


# --- decision ids --------------------------------------------------------------------------------


def test_decision_ids_unique_and_formatted() -> None:
    """Ids are '<12 hex process prefix>-<12 hex counter>' and never repeat."""
    ids = DecisionIds()
    seen = [ids.next() for _ in range(10_000)]
    assert len(set(seen)) == len(seen)
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{12}", i) for i in seen)
    assert seen[0].endswith("-000000000001")
    assert {i.split("-")[0] for i in seen} == {seen[0].split("-")[0]}


def test_decision_ids_differ_between_instances() -> None:
    """Two generators (two processes) use different prefixes."""
    prefixes = {DecisionIds().next().split("-")[0] for _ in range(50)}
    assert len(prefixes) == 50


def test_decision_ids_unique_across_threads() -> None:
    """Concurrent callers of one generator never get the same id."""
    ids = DecisionIds()
    out: list[list[str]] = [[] for _ in range(8)]

    def work(bucket: list[str]) -> None:
        bucket.extend(ids.next() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for b in out for i in b]
    assert len(set(flat)) == len(flat) == 16_000


# --- snapshot versions ---------------------------------------------------------------------------


def test_shipped_snapshot_version() -> None:
    """name@version of each policy, sorted, then '#' and 12 hex digits of the content hash."""
    snapshot = load_directory(REPO / "policies")
    assert re.fullmatch(
        r"customers@1,orders@1,profile@1,public@1,query-apis@1,search@1#[0-9a-f]{12}",
        snapshot.version,
    )
    assert snapshot.version.endswith("#" + snapshot.content_hash)
    assert snapshot.policies == (
        ("customers", "1"),
        ("orders", "1"),
        ("profile", "1"),
        ("public", "1"),
        ("query-apis", "1"),
        ("search", "1"),
    )
    files = (
        "customers.yaml", "demo-keys.yaml", "orders.yaml", "profile.yaml", "public.yaml",
        "query.yaml", "search.yaml",
    )  # fmt: skip
    assert snapshot.files == files
    assert snapshot.route_count == 9
    assert set(snapshot.stage_seconds) == {"parse", "resolve", "normalise", "index"}


def test_version_follows_content(tmp_path: Path) -> None:
    """Same files, same version; any byte changed, new hash; a missing version is '0'."""
    first = _load(tmp_path / "a", _policy())
    again = _load(tmp_path / "b", _policy())
    assert first.version == again.version
    assert first.version.startswith("p@3#")
    changed = _load(tmp_path / "c", _policy() + "# a comment\n")
    assert changed.version != first.version
    assert changed.version.split("#")[0] == "p@3"
    unversioned = _load(tmp_path / "d", _policy().replace(', version: "3"', ""))
    assert unversioned.version.startswith("p@0#")
    numeric = _load(tmp_path / "e", _policy().replace('version: "3"', "version: 12"))
    assert numeric.policies == (("p", "12"),)


# --- presented API keys ---------------------------------------------------------------------------


def test_valid_keys_are_remembered_invalid_ones_are_not(tmp_path: Path) -> None:
    snapshot = _load(tmp_path, _policy())
    policy = _route(snapshot).policy
    for n in range(3):
        d = evaluate(snapshot, _view(**ALICE), f"d{n}")
        assert (d.allowed, d.principal) == (True, "alice")
    assert policy.presented == {"alice-key": policy.keys[ALICE_SHA]}
    for n in range(50):  # a caller guessing keys cannot grow the memo
        d = evaluate(snapshot, _view(**{**ALICE, "x-api-key": f"guess-{n}"}), "g")
        assert (d.allowed, d.reason) == (False, "invalid_api_key")
    assert list(policy.presented) == ["alice-key"]


def test_a_reload_starts_with_no_remembered_keys(tmp_path: Path) -> None:
    first = _load(tmp_path / "a", _policy())
    assert evaluate(first, _view(**ALICE), "d").allowed
    second = _load(tmp_path / "b", _policy().replace(ALICE_SHA, "ab" * 32))
    d = evaluate(second, _view(**ALICE), "d")  # the key was revoked: the old memo is not used
    assert (d.allowed, d.reason) == (False, "invalid_api_key")
    assert _route(second).policy.presented == {}


def _route(snapshot: PolicySnapshot) -> CompiledRoute:
    route = snapshot.index.lookup("h", 0, ["x"], "GET")
    assert route is not None
    return route


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (", expires: 2000-01-01T00:00:00Z", "api_key_expired"),
        (", expires: '2999-01-01T00:00:00+02:00'", "allowed"),
        (", revoked: true", "api_key_revoked"),
        (", revoked: false, expires: 2999-12-31T23:59:59Z", "allowed"),
    ],
)
def test_key_expiry_and_revocation(tmp_path: Path, extra: str, reason: str) -> None:
    text = _policy().replace(
        "principal: alice, roles: [staff]}", f"principal: alice, roles: [staff]{extra}}}"
    )
    snapshot = _load(tmp_path, text)
    for _ in range(2):  # remembered keys are checked again
        d = evaluate(snapshot, _view(**ALICE), "d")
        assert d.reason == reason
    if reason != "allowed":
        assert d.status == 401


@pytest.mark.parametrize("value", ["tomorrow", "2027-01-01T00:00:00", "2027-01-01"])
def test_key_expiry_needs_a_zoned_date_time(tmp_path: Path, value: str) -> None:
    text = _policy().replace(
        "principal: alice, roles: [staff]}", f"principal: alice, expires: {value}}}"
    )
    with pytest.raises(PolicyLoadError) as info:
        _load(tmp_path, text)
    assert [e.code for e in info.value.errors] == ["apikey.expires"]
