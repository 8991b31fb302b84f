"""Runs the YAML conformance corpus: every case of tests/conformance/*.yaml is one test.

A corpus file holds a policy set and the cases evaluated against it:

    description: what the file covers
    policy_dir: policies          # a directory relative to the repository root, or
    policies: [ ...documents... ] # inline GuardrailPolicy / ApiKeySet documents
    cases:
      - name: unique-within-the-file
        request: {method, path, host, headers, source_principal, destination_port}
        expect: {allowed, status, reason, ...}

Inline documents are written to a temporary directory and loaded with the real loader.
Every decision is made with the decision id `corpus-decision-id`, and made twice: from the
JSON request and from the same request serialized as Envoy's CheckRequest, read the way
the server reads it; both must agree. The expect keys:

- equal: allowed, status, reason, reasons, policy, route, action, principal, rule, actions
- subset of a mapping: upstream_headers_set, upstream_headers_modes, response_headers_add,
  query_parameters_set, deny_headers, body (the deny body, parsed as JSON)
- subset of a list: upstream_headers_remove, query_parameters_remove
- exactly: upstream_headers_set_exactly (mapping), upstream_headers_remove_exactly (list)
- names that must not appear: upstream_headers_not_set, upstream_headers_not_removed,
  deny_headers_absent
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.server.encode import encode_allow
from guardrail_authz.server.response import to_check_response
from guardrail_authz.server.servicer import view_from_check
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckRequest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "conformance"
DECISION_ID = "corpus-decision-id"

_REQUEST_KEYS = frozenset(
    {
        "method",
        "path",
        "host",
        "headers",
        "source_principal",
        "source_address",
        "destination_port",
        "body",
    }
)
_EQUAL = (
    "allowed",
    "status",
    "reason",
    "reasons",
    "policy",
    "route",
    "action",
    "principal",
    "rule",
    "actions",
)
_MAP_SUBSET = (
    "upstream_headers_set",
    "upstream_headers_modes",
    "response_headers_add",
    "query_parameters_set",
    "deny_headers",
)
_LIST_SUBSET = ("upstream_headers_remove", "query_parameters_remove")
_ABSENT = {
    "upstream_headers_not_set": "upstream_headers_set",
    "upstream_headers_not_removed": "upstream_headers_remove",
    "deny_headers_absent": "deny_headers",
}
_EXACT = {
    "upstream_headers_set_exactly": "upstream_headers_set",
    "upstream_headers_remove_exactly": "upstream_headers_remove",
}
_EXPECT_KEYS = frozenset({*_EQUAL, *_MAP_SUBSET, *_LIST_SUBSET, *_ABSENT, *_EXACT, "body"})


@dataclass(frozen=True, slots=True)
class Case:
    """One corpus case: where it comes from, the request and what the decision must say."""

    file: str
    name: str
    request: dict[str, Any]
    expect: dict[str, Any]


def _corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: a corpus file is a mapping"
    return data


def _cases() -> list[Case]:
    out: list[Case] = []
    for path in _corpus_files():
        data = _read(path)
        seen: set[str] = set()
        for raw in data.get("cases") or []:
            name = str(raw["name"])
            assert name not in seen, f"{path.name}: duplicate case name {name!r}"
            seen.add(name)
            out.append(Case(path.stem, name, dict(raw["request"]), dict(raw["expect"])))
    return out


CASES = _cases()


@pytest.fixture(scope="session")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PolicySnapshot]:
    """One compiled snapshot per corpus file, keyed by the file's stem."""
    out: dict[str, PolicySnapshot] = {}
    for path in _corpus_files():
        data = _read(path)
        has_dir, has_inline = "policy_dir" in data, "policies" in data
        assert has_dir != has_inline, f"{path.name}: give exactly one of policy_dir, policies"
        if has_dir:
            directory = REPO / str(data["policy_dir"])
        else:
            directory = tmp_path_factory.mktemp(path.stem)
            text = yaml.safe_dump_all(data["policies"], sort_keys=False, explicit_start=True)
            (directory / "policies.yaml").write_text(text, encoding="utf-8")
        out[path.stem] = load_directory(directory)
    return out


def test_corpus_is_large_enough() -> None:
    """The corpus covers the policy format broadly (a guard against a file going missing)."""
    assert len(CASES) >= 60
    assert {c.file for c in CASES} >= {"shipped", "routing", "rules", "mutations", "paths"}


def test_corpus_cases_are_well_formed() -> None:
    """Unknown request or expect keys are typos, not silently ignored checks."""
    for case in CASES:
        where = f"{case.file}::{case.name}"
        assert set(case.request) <= _REQUEST_KEYS, f"{where}: unknown request keys"
        assert set(case.expect) <= _EXPECT_KEYS, f"{where}: unknown expect keys"
        assert "allowed" in case.expect, f"{where}: every case states allowed"


def _unordered(d: Decision) -> dict[str, Any]:
    """The decision as JSON, removals sorted: header maps iterate in their own order."""
    out = d.to_json()
    out["upstream_headers_remove"] = sorted(out["upstream_headers_remove"])
    return out


def _wire_view(view: RequestView) -> RequestView:
    """The request as Envoy would send it, parsed from bytes and read like the server does."""
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = view.method, view.raw_path, view.host
    http.raw_body = view.body
    for name, value in view.headers.items():
        http.headers[name] = value
    req.attributes.source.principal = view.source_principal
    req.attributes.source.address.socket_address.address = view.source_address
    req.attributes.destination.address.socket_address.port_value = view.port
    payload = req.SerializeToString()
    return view_from_check(CheckRequest.FromString(payload), payload)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}::{c.name}" for c in CASES])
def test_case(case: Case, snapshots: dict[str, PolicySnapshot]) -> None:
    """The decision for the case's request matches every expectation of the case."""
    view = RequestView.from_json(case.request)
    decision = evaluate(snapshots[case.file], view, DECISION_ID)
    wire = evaluate(snapshots[case.file], _wire_view(view), DECISION_ID)
    assert _unordered(wire) == _unordered(decision), "the server's CheckRequest path differs"
    if decision.allowed:  # the hot path's hand-rolled encoding equals the generated classes'
        assert encode_allow(decision) == to_check_response(decision).SerializeToString()
    got = decision.to_json()
    expect = case.expect
    for key in _EQUAL:
        if key in expect:
            assert got[key] == expect[key], f"{key}: {got[key]!r} != {expect[key]!r}\n{got}"
    for key in _MAP_SUBSET:
        for name, value in (expect.get(key) or {}).items():
            assert got[key].get(name) == str(value), f"{key}[{name!r}]\n{got}"
    for key in _LIST_SUBSET:
        missing = [v for v in expect.get(key) or [] if v not in got[key]]
        assert not missing, f"{key}: missing {missing}\n{got}"
    for key, field in _ABSENT.items():
        present = [v for v in expect.get(key) or [] if v in got[field]]
        assert not present, f"{key}: present {present}\n{got}"
    for key, field in _EXACT.items():
        if key in expect:
            want = expect[key]
            have = got[field] if isinstance(want, list) else dict(got[field])
            assert have == want, f"{key}: {have!r} != {want!r}"
    if "body" in expect:
        assert decision.body, "expected a deny body"
        body = json.loads(decision.body)
        for name, value in expect["body"].items():
            assert body.get(name) == value, f"body[{name!r}]: {body!r}"
