"""Request header masking on ext_authz's allow path: the `mask.headers` section, its load
errors, and what evaluate() and the CheckResponse send upstream for each style."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from guardrail_authz.audit import render
from guardrail_authz.engine import evaluate as evaluate_module
from guardrail_authz.engine.caller import Caller
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.payload.mask import HeaderMaskRule, MaskPlan, Style, mask_hash
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.compile_mask import compile_mask, reserved_headers
from guardrail_authz.policy.errors import ErrorSink, PolicyLoadError
from guardrail_authz.policy.parse_mask import mask_spec
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.policy.source import HeaderSet, OnAllow, Where
from guardrail_authz.policy.source_mask import MaskSpec
from guardrail_authz.policy.yamlsrc import load_documents
from guardrail_authz.server.encode import encode_allow
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse

R = "spec.routes[0]"
M = f"{R}.mask"
KEY_A = b"k" * 32
KEY_B = b"j" * 32
CARD = "4111 1111 1111 1111"
EMAIL = "ann@example.com"
SSN = "123-45-6789"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


POLICY = f"""\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {{name: p, version: "1"}}
spec:
  apiKeys:
    keys:
      - {{sha256: {_sha("alice-key")}, principal: alice, roles: [staff]}}
      - {{sha256: {_sha("root-key")}, principal: root, roles: [admin]}}
      - {{sha256: {_sha("audit-key")}, principal: auditor-1, roles: [staff]}}
  routes:
    - name: pay
      match: {{paths: [/pay]}}
      rules:
        - {{name: staff, effect: allow, when: {{roles: [staff, admin]}}}}
      mask:
        headers:
          - {{name: x-card-number, style: partial, keep: 4}}
          - {{name: x-customer-email, style: hash}}
          - {{name: x-debug-token, style: remove}}
          - {{name: x-ssn, style: redact, exempt: {{roles: [admin]}}}}
        exempt: {{principals: ["auditor-*"]}}
    - name: watch
      mode: monitor
      match: {{paths: [/watch]}}
      rules:
        - {{name: admins, effect: allow, when: {{roles: [admin]}}}}
      mask:
        headers:
          - {{name: x-card-number, style: redact}}
    - name: plain
      match: {{paths: [/plain]}}
      rules:
        - {{name: anyone, effect: allow, when: {{roles: [staff]}}}}
"""

ALL = {"x-card-number": CARD, "x-customer-email": EMAIL, "x-debug-token": "t0k", "x-ssn": SSN}


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    """The policy above, loaded the way the server loads a directory."""
    directory = tmp_path_factory.mktemp("headermask")
    (directory / "p.yaml").write_text(POLICY, encoding="utf-8")
    return load_directory(directory)


def _view(path: str, key: str, **headers: str) -> RequestView:
    return RequestView(method="GET", raw_path=path, host="h", headers={"x-api-key": key, **headers})


def _decide(
    snap: PolicySnapshot, path: str, key: str, headers: dict[str, str], runtime: Runtime
) -> Decision:
    return evaluate(snap, _view(path, key, **headers), "d-1", runtime)


def _sets(d: Decision) -> dict[str, str]:
    return {name: value for name, value, _ in d.upstream_headers_set}


# --- parsing ------------------------------------------------------------------------------------


def _load(section: str) -> tuple[MaskSpec | None, MaskPlan | None, ErrorSink]:
    """Parse and compile a route whose YAML (line 1: `name: r`) holds `section` from line 2."""
    text = "name: r\n" + textwrap.dedent(section)
    sink = ErrorSink()
    (doc, _), *_ = load_documents(text, "routes.yaml", sink)
    reader = Reader(doc, R, "routes.yaml", sink).mapping("mask")
    assert reader is not None
    spec = mask_spec(reader)
    return spec, compile_mask(spec, "shop", sink), sink


def _errors(section: str) -> set[tuple[int, str, str]]:
    _, _, sink = _load(section)
    assert all(e.file == "routes.yaml" for e in sink.errors)
    return {(e.line, e.field, e.code) for e in sink.errors}


def test_a_headers_only_section_compiles_and_asks_ext_proc_for_no_body() -> None:
    spec, plan, sink = _load(
        """\
        mask:
          headers:
            - {name: x-card-number, style: partial, keep: 2}
            - {name: x-debug-token, style: remove}
            - name: x-ssn
              exempt: {roles: [admin]}
        """
    )
    assert not sink, sink.sorted()
    assert spec is not None
    assert plan is not None
    assert spec.headers[2].where == Where("routes.yaml", 6, f"{M}.headers[2].name")
    assert (plan.response, plan.request, plan.fields, plan.detectors) == (False, False, (), ())
    card, token, ssn = plan.headers
    assert card == HeaderMaskRule("x-card-number", Style("partial", 2))
    assert (token.name, token.style, token.exemption) == ("x-debug-token", None, None)
    assert ssn.style == Style("redact")
    assert ssn.exemption is not None
    assert ssn.exemption.applies("bob", frozenset({"admin"}))
    assert not ssn.exemption.applies("bob", frozenset({"staff"}))
    assert _errors("mask: {response: false, request: false, headers: [{name: x-a}]}") == set()


def test_headers_beside_body_rules_keep_the_body_defaults() -> None:
    _, plan, sink = _load(
        """\
        mask:
          fields: [{path: $.a}]
          headers: [{name: x-a, style: hash}]
        """
    )
    assert not sink, sink.sorted()
    assert plan is not None
    assert (plan.response, plan.request) == (True, False)
    assert plan.headers == (HeaderMaskRule("x-a", Style("hash")),)


@pytest.mark.parametrize(
    ("section", "found"),
    [
        ("mask: {}", (2, M, "mask.empty")),
        ("mask: {headers: []}", (2, M, "mask.empty")),
        ("mask: {headers: x-a}", (2, f"{M}.headers", "field.type")),
        ("mask: {headers: [x-a]}", (2, f"{M}.headers[0]", "field.type")),
        ("mask: {headers: [{style: redact}]}", (2, f"{M}.headers[0]", "field.required")),
        ("mask: {headers: [{name: X-Card}]}", (2, f"{M}.headers[0].name", "field.header")),
        ("mask: {headers: [{name: 'x a'}]}", (2, f"{M}.headers[0].name", "field.header")),
        ("mask: {headers: [{name: ':path'}]}", (2, f"{M}.headers[0].name", "field.header")),
        (
            "mask: {headers: [{name: x-guardrail-principal}]}",
            (2, f"{M}.headers[0].name", "mask.header"),
        ),
        (
            "mask: {headers: [{name: x-a, style: blur}]}",
            (2, f"{M}.headers[0].style", "field.choice"),
        ),
        (
            "mask: {headers: [{name: x-a, style: remove, keep: 2}]}",
            (2, f"{M}.headers[0].keep", "mask.keep"),
        ),
        (
            "mask: {headers: [{name: x-a, style: partial, keep: 9}]}",
            (2, f"{M}.headers[0].keep", "field.range"),
        ),
        (
            "mask: {headers: [{name: x-a, exempt: {}}]}",
            (2, f"{M}.headers[0].exempt", "mask.exempt"),
        ),
        ("mask: {headers: [{name: x-a, path: $.a}]}", (2, f"{M}.headers[0].path", "field.unknown")),
        (
            "mask: {response: true, headers: [{name: x-a}]}",
            (2, f"{M}.response", "mask.direction"),
        ),
        (
            "mask: {request: true, headers: [{name: x-a}]}",
            (2, f"{M}.request", "mask.direction"),
        ),
    ],
)
def test_each_mistake_is_reported_where_it_is(section: str, found: tuple[int, str, str]) -> None:
    assert _errors(section) == {found}


def test_a_header_listed_twice_is_reported_at_the_second() -> None:
    section = """\
    mask:
      headers:
        - {name: x-a}
        - {name: x-b, style: hash}
        - {name: x-a, style: remove}
    """
    assert _errors(section) == {(6, f"{M}.headers[2].name", "mask.duplicate")}


def test_the_errors_say_what_to_do() -> None:
    _, _, sink = _load("mask: {headers: [{name: X-Card}, {name: x-guardrail-roles}]}")
    messages = [e.message for e in sink.sorted()]
    assert any("write it in lower case, 'x-card'" in m for m in messages), messages
    assert any("the guardrail's own" in m for m in messages), messages
    _, _, sink = _load("mask: {exempt: {roles: [a]}}")
    assert "'headers'" in sink.sorted()[0].message


def test_a_policy_file_with_a_bad_header_rule_fails_to_load(tmp_path: Path) -> None:
    text = POLICY.replace("x-debug-token, style: remove", "x-guardrail-decision-id, style: remove")
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as failed:
        load_directory(tmp_path)
    (error,) = failed.value.errors
    line = text.splitlines().index("          - {name: x-guardrail-decision-id, style: remove}")
    assert (error.file, error.line, error.field, error.code) == (
        "p.yaml",
        line + 1,
        f"{R}.mask.headers[2].name",
        "mask.header",
    )


def test_reserved_headers_are_refused_with_what_handles_them(snap: PolicySnapshot) -> None:
    policy = snap.compiled_policies[0]
    where = Where("p.yaml", 3, "x")
    on_allow = OnAllow(
        set_headers=(HeaderSet("x-tenant", "acme", "overwrite", where),),
        remove_headers=("x-internal",),
        claim_headers=(("email", "x-user-email"),),
    )
    reserved = reserved_headers(policy, on_allow)
    assert set(reserved) == {"x-api-key", "x-tenant", "x-internal", "x-user-email"}
    sink = ErrorSink()
    text = "name: r\nmask:\n  headers: [{name: x-api-key}, {name: x-tenant}, {name: x-ok}]\n"
    (doc, _), *_ = load_documents(text, "routes.yaml", sink)
    reader = Reader(doc, R, "routes.yaml", sink).mapping("mask")
    assert reader is not None
    plan = compile_mask(mask_spec(reader), "p", sink, reserved)
    assert plan is not None
    assert [h.name for h in plan.headers] == ["x-ok"]
    found = {(e.line, e.field, e.code) for e in sink.errors}
    assert found == {
        (3, f"{M}.headers[0].name", "mask.header"),
        (3, f"{M}.headers[1].name", "mask.header"),
    }
    assert any("API-key header" in e.message for e in sink.errors)


# --- evaluate() -----------------------------------------------------------------------------------


def test_each_style_on_an_allow(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/pay", "alice-key", ALL, Runtime(mask_key=KEY_A))
    assert d.allowed
    assert d.reason == "allowed"
    sets = _sets(d)
    assert sets["x-card-number"] == "**** **** **** 1111"
    assert sets["x-customer-email"] == mask_hash(KEY_A, EMAIL)
    assert sets["x-ssn"] == "[redacted]"
    assert "x-debug-token" not in sets
    assert "x-debug-token" in d.upstream_headers_remove
    modes = {name: mode for name, _, mode in d.upstream_headers_set}
    assert {modes[h] for h in ("x-card-number", "x-customer-email", "x-ssn")} == {"overwrite"}
    shown = d.to_json()["upstream_headers_set"]
    assert shown["x-card-number"] == "**** **** **** 1111"
    assert CARD not in json.dumps(d.to_json())


def test_an_exempt_role_sees_that_header_and_no_more(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/pay", "root-key", ALL, Runtime(mask_key=KEY_A))
    assert d.allowed
    sets = _sets(d)
    assert "x-ssn" not in sets
    assert "x-ssn" not in d.upstream_headers_remove
    assert sets["x-card-number"] == "**** **** **** 1111"
    assert "x-debug-token" in d.upstream_headers_remove


def test_the_section_exemption_covers_headers_too(snap: PolicySnapshot) -> None:
    trace: list[str] = []
    d = evaluate(snap, _view("/pay", "audit-key", **ALL), "d-0", Runtime(mask_key=KEY_A), trace)
    assert d.allowed
    assert "mask: headers left as they are (this caller is exempt)" in trace
    assert d.principal == "auditor-1"
    assert set(_sets(d)).isdisjoint(ALL)
    assert set(d.upstream_headers_remove).isdisjoint(ALL)


def test_absent_headers_are_left_alone(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/pay", "alice-key", {"x-other": CARD}, Runtime(mask_key=KEY_A))
    assert d.allowed
    assert set(_sets(d)).isdisjoint(ALL)
    assert set(d.upstream_headers_remove).isdisjoint(ALL)
    assert "x-other" not in _sets(d)
    d = _decide(snap, "/pay", "alice-key", {"x-ssn": SSN}, Runtime(mask_key=KEY_A))
    assert set(_sets(d)) & set(ALL) == {"x-ssn"}


def test_a_monitor_mode_allow_still_masks(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/watch", "alice-key", {"x-card-number": CARD}, Runtime(mask_key=KEY_A))
    assert d.allowed
    assert d.reason == "allowed_in_monitor_mode"
    assert [w.reason for w in d.monitored] == ["no_rule_matched"]
    assert _sets(d)["x-card-number"] == "[redacted]"


def test_a_denial_sets_nothing_upstream(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/pay", "wrong-key", ALL, Runtime(mask_key=KEY_A))
    assert not d.allowed
    assert not d.upstream_headers_set
    assert not d.upstream_headers_remove


def test_a_route_without_a_mask_passes_headers_through(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/plain", "alice-key", ALL, Runtime(mask_key=KEY_A))
    assert d.allowed
    assert set(_sets(d)).isdisjoint(ALL)
    assert set(d.upstream_headers_remove).isdisjoint(ALL)


def test_hashes_match_for_equal_values_and_differ_between_keys(snap: PolicySnapshot) -> None:
    def hashed(email: str, key: bytes) -> str:
        d = _decide(snap, "/pay", "alice-key", {"x-customer-email": email}, Runtime(mask_key=key))
        return _sets(d)["x-customer-email"]

    first = hashed(EMAIL, KEY_A)
    assert first.startswith("hmac:")
    assert len(first) == len("hmac:") + 16
    assert hashed(EMAIL, KEY_A) == first
    assert hashed("bob@example.com", KEY_A) != first
    assert hashed(EMAIL, KEY_B) != first
    assert hashed(EMAIL, KEY_B) == mask_hash(KEY_B, EMAIL)


def test_without_a_key_one_random_key_serves_the_whole_process(snap: PolicySnapshot) -> None:
    key = Runtime().mask_key
    assert len(key) == 32
    assert Runtime().mask_key == key
    assert key not in (KEY_A, KEY_B)
    d = evaluate(snap, _view("/pay", "alice-key", **{"x-customer-email": EMAIL}), "d-2")
    assert _sets(d)["x-customer-email"] == mask_hash(key, EMAIL)


def test_the_trace_names_each_masked_header(snap: PolicySnapshot) -> None:
    trace: list[str] = []
    evaluate(snap, _view("/pay", "root-key", **ALL), "d-3", Runtime(mask_key=KEY_A), trace)
    assert "mask: header x-card-number masked (partial)" in trace
    assert "mask: header x-debug-token removed" in trace
    assert "mask: header x-ssn left as it is (this caller is exempt)" in trace


def test_a_header_the_allow_already_sets_or_removes_is_left_to_that() -> None:
    plan = MaskPlan(
        response=False,
        request=False,
        headers=(
            HeaderMaskRule("x-set", Style("redact")),
            HeaderMaskRule("x-gone", Style("redact")),
            HeaderMaskRule("x-free", None),
        ),
    )
    d = Decision(True, 200, "allowed", "d-4", "v")
    d.upstream_headers_set.append(("x-set", "ours", "overwrite"))
    d.upstream_headers_remove.append("x-gone")
    view = RequestView(
        method="GET",
        raw_path="/",
        host="h",
        headers={"x-set": "theirs", "x-gone": "theirs", "x-free": "theirs"},
    )
    caller = Caller("alice", frozenset(), "", None)
    evaluate_module._mask_headers(plan, view, caller, d, KEY_A)
    assert d.upstream_headers_set == [("x-set", "ours", "overwrite")]
    assert d.upstream_headers_remove == ["x-gone", "x-free"]


# --- on the wire and in the audit record ---------------------------------------------------------


def test_the_check_response_carries_the_masked_headers(snap: PolicySnapshot) -> None:
    d = _decide(snap, "/pay", "alice-key", ALL, Runtime(mask_key=KEY_A))
    ok = CheckResponse.FromString(encode_allow(d)).ok_response
    sent = {o.header.key: o.header.value for o in ok.headers}
    assert sent["x-card-number"] == "**** **** **** 1111"
    assert sent["x-ssn"] == "[redacted]"
    assert sent["x-customer-email"] == mask_hash(KEY_A, EMAIL)
    assert "x-debug-token" in ok.headers_to_remove
    assert CARD not in sent.values()


def test_the_audit_record_holds_the_masked_values_as_mutations(snap: PolicySnapshot) -> None:
    view = _view("/pay", "alice-key", **ALL)
    d = evaluate(snap, view, "d-5", Runtime(mask_key=KEY_A))
    record = json.loads(render(d, view, 0.001, "2024-01-01T00:00:00.000Z"))
    mutations = record["mutations"]
    assert mutations["set"]["x-card-number"] == "**** **** **** 1111"
    assert mutations["set"]["x-ssn"] == "[redacted]"
    assert "x-debug-token" in mutations["remove"]
    written = json.dumps(mutations)
    assert all(value not in written for value in ALL.values())
