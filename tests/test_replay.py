"""Replay: a real audit log of the shipped policies, re-evaluated against candidates."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guardrail_authz.audit import AuditLog
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.rollout import replay_cli
from guardrail_authz.rollout.bundle import build_bundle
from guardrail_authz.rollout.replay import (
    BODY_INSPECTED,
    INTERNAL_ERROR,
    JWT_IDENTITY,
    NOT_CAPTURED,
    RATE_LIMITED,
    REDACTED_INPUT,
    TRUNCATED_REQUEST,
    ReplayError,
    load_candidate,
    replay_file,
    view_of,
)
from guardrail_authz.rollout.replay_report import ReplayResult, mutation_diff, render_text
from tests.conftest import SHIPPED_POLICIES
from tests.jwtkit import make_key

READER = {"x-api-key": "demo-reader-key"}
ADMIN = {"x-api-key": "demo-admin-key"}
FRONTEND = "spiffe://cluster.local/ns/shop/sa/frontend"
ISSUER = "https://demo-idp.guardrail-authz.local"
REPLAYED = 9  # records of the log below that every candidate can re-evaluate
MALFORMED_LINES = 4
ALLOW = "          effect: allow\n"  # the public ping's one rule
DELETE_ROUTE = "    - name: delete\n"  # the orders route after orders/read


@dataclass(frozen=True)
class Recorded:
    """The policies a log was recorded with, the log, and facts about it."""

    policies: Path
    log: Path
    rate_limited: int  # 429 records of the search burst
    search_allows: int


def _policies(target: Path) -> Path:
    """The shipped policies, with the profile policy's JWKS inline so tokens verify offline."""
    shutil.copytree(SHIPPED_POLICIES, target)
    profile = target / "profile.yaml"
    key = make_key("EdDSA", "k1")
    jwks = json.dumps([key.jwk])
    text = profile.read_text().replace("uri: http://127.0.0.1:8082/jwks.json", f"keys: {jwks}")
    profile.write_text(text)
    (target.parent / "token").write_text(
        key.sign({"iss": ISSUER, "aud": "guardrail-demo", "sub": "alice", "exp": 2**31})
    )
    return target


def _view(
    method: str, path: str, headers: dict[str, str] | None = None, **extra: Any
) -> RequestView:
    full = {":authority": "shop.example", ":method": method, ":path": path, **(headers or {})}
    return RequestView(
        method=method, raw_path=path, host="shop.example", headers=full, port=8080, **extra
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Decisions of the shipped policies, written by the real AuditLog."""
    root = tmp_path_factory.mktemp("recorded")
    policies = _policies(root / "policies")
    token = (root / "token").read_text()
    snap = load_directory(policies)
    log_path = root / "audit.log"
    audit = AuditLog(log_path)
    audit.set_secret_headers(snap.api_key_headers, snap.secret_headers)
    n = iter(range(1000))

    def record(view: RequestView, runtime: Runtime | None = None) -> Decision:
        d = evaluate(snap, view, f"d-{next(n)}", runtime)
        audit.record(d, view, 0.001)
        return d

    # Re-evaluable by every candidate (REPLAYED of them).
    assert record(_view("GET", "/api/orders", READER)).allowed
    assert record(_view("GET", "/api/orders?page=2", READER)).allowed
    assert record(_view("GET", "/api/orders/7?expand=items&token=s3cr3t-q", ADMIN)).allowed
    assert record(_view("DELETE", "/api/orders/7", READER)).status == 403
    assert record(_view("DELETE", "/api/orders/7", ADMIN)).allowed
    assert record(_view("GET", "/api/orders")).status == 401
    cookie = {"cookie": "session=c00kie-value", "authorization": "Bearer opaque-t0ken"}
    assert record(_view("GET", "/public/ping", cookie)).allowed
    assert record(_view("GET", "/api/orders", source_principal=FRONTEND)).allowed
    assert record(_view("GET", "/api/orders", {"x-api-key": "not-a-key"})).status == 401
    # Not re-evaluable: a body on a route that inspects it; a JWT caller; rate limits; a 500;
    # a path longer than the record keeps; a decision without a request.
    body = b'{"item":"book","quantity":1}'
    post = _view("POST", "/api/orders", {**READER, "content-type": "application/json"}, body=body)
    assert record(post).allowed
    bearer = {"authorization": f"Bearer {token}"}
    jwt_decision = record(_view("GET", "/api/profile", bearer))
    assert jwt_decision.allowed, jwt_decision
    assert jwt_decision.credential == "jwt"
    runtime = Runtime(LocalLimiter())
    outcomes = [record(_view("GET", "/api/search?q=x", READER), runtime) for _ in range(8)]
    limited = sum(d.status == 429 for d in outcomes)
    assert limited >= 1
    failed = Decision(False, 500, "internal_error", "d-500", snap.version, route="orders/read")
    audit.record(failed, _view("GET", "/api/orders", READER), 0.001)
    assert record(_view("GET", "/api/orders/" + "x" * 600, READER)).allowed
    audit.record(Decision(False, 400, "bad_request", "d-noview", snap.version), None, 0.001)
    audit.close()
    # One record in the format of before request capture, other events and malformed lines.
    first = json.loads(log_path.read_text().splitlines()[1])  # line 0: the chain's start
    for name in ("headers", "port", "query", "credential", "enforced", "mutations"):
        first.pop(name, None)
    first["decision_id"] = "d-old"
    with log_path.open("ab") as f:
        f.write(json.dumps(first).encode() + b"\n")
        f.write(b'{"time":"t","event":"decision_unrenderable","decision_id":"d-x"}\n')
        f.write(b"not json at all\n\n")
        f.write(b"[1, 2]\n")
        f.write(b'{"event":"decision","outcome":"allow","status":200}\n')
        f.write(b'{"event":"decision","decision_id":"d-\xff"}\n')
    return Recorded(policies, log_path, limited, len(outcomes) - limited)


def _candidate(recorded: Recorded, tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    target = tmp_path / "candidate"
    shutil.copytree(recorded.policies, target)
    edit(target)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _replay(candidate: Path, log: Path, examples: int = 3) -> ReplayResult:
    return replay_file(log, load_candidate(candidate), examples)


def test_the_same_policies_change_nothing(recorded: Recorded) -> None:
    result = _replay(recorded.policies, recorded.log)
    assert result.changed == {}
    assert result.replayed == REPLAYED + recorded.search_allows
    assert result.unchanged == result.replayed
    assert dict(result.not_reevaluable) == {
        BODY_INSPECTED: 1,
        JWT_IDENTITY: 1,
        RATE_LIMITED: recorded.rate_limited,
        INTERNAL_ERROR: 1,
        TRUNCATED_REQUEST: 1,
        NOT_CAPTURED: 2,  # the decision without a request and the old-format record
    }
    total = result.replayed + sum(result.not_reevaluable.values())
    assert result.read == total
    assert dict(result.other_events) == {"decision_unrenderable": 1, "checkpoint": 2}
    assert "no replayed decision would change" in render_text(result, "c", "log")


def test_malformed_lines_are_counted_with_their_line_numbers(recorded: Recorded) -> None:
    result = _replay(recorded.policies, recorded.log)
    lines = recorded.log.read_bytes().split(b"\n")
    numbered = {m.line: m.problem for m in result.malformed}
    assert result.malformed_count == MALFORMED_LINES == len(numbered)
    assert lines[min(numbered) - 1] == b"not json at all"
    problems = [numbered[k] for k in sorted(numbered)]
    assert problems[0].startswith("not JSON")
    assert problems[1] == "not a JSON object"
    assert problems[2] == "decision record without a decision_id"
    assert problems[3] == "not UTF-8"
    text = render_text(result, "c", "log")
    assert f"malformed lines: {MALFORMED_LINES} (line {min(numbered)}: not JSON" in text


def test_a_tightened_rule_reports_exactly_the_affected_records(
    recorded: Recorded, tmp_path: Path
) -> None:
    def only_admins_read(target: Path) -> None:
        _replace(target / "orders.yaml", "principals: [reader, admin]", "principals: [admin]")

    result = _replay(_candidate(recorded, tmp_path, only_admins_read), recorded.log, examples=1)
    assert dict(result.changed) == {"allow_to_deny": 2}
    assert result.unchanged == result.replayed - 2
    [group] = result.groups.values()
    assert (group.recorded_route, group.candidate_route, group.cause) == (
        "orders/read",
        "orders/read",
        "no_rule_matched",
    )
    assert group.count == 2
    [example] = group.examples  # --examples 1
    assert example.principal == "reader"
    assert (example.method, example.path) == ("GET", "/api/orders")
    assert example.before.text() == "allow 200 allowed [rule api-key-callers]"
    assert example.after.text() == "deny 403 no_rule_matched"
    text = render_text(result, "cand", "log")
    assert "allow→deny, 2 records: orders/read → orders/read, no_rule_matched" in text


def test_changed_headers_are_mutation_changes(recorded: Recorded, tmp_path: Path) -> None:
    def new_headers(target: Path) -> None:
        on_allow = (
            "      onAllow:\n"
            "        responseHeaders:\n"
            "          add: [{name: cache-control, value: no-store}]\n"
        )
        _replace(
            target / "public.yaml",
            "          effect: allow\n",
            "          effect: allow\n" + on_allow,
        )
        upstream = (
            "      onAllow:\n        requestHeaders:\n          set: [{name: x-env, value: prod}]\n"
        )
        _replace(target / "orders.yaml", "    - name: delete\n", upstream + "    - name: delete\n")

    result = _replay(_candidate(recorded, tmp_path, new_headers), recorded.log)
    counts = {(g.candidate_route, g.cause): g.count for g in result.groups.values()}
    assert counts == {
        ("orders/read", "api-key-callers"): 3,
        ("orders/read", "shop-frontend"): 1,
        ("public/ping", "anyone"): 1,
    }
    assert dict(result.changed) == {"mutations": 5}
    ping = next(g for g in result.groups.values() if g.candidate_route == "public/ping")
    example = ping.examples[0]
    assert example.mutations is not None
    assert mutation_diff(*example.mutations) == ['response cache-control: null → "no-store"']
    assert 'set x-env: null → "prod"' in render_text(result, "c", "log")


def test_rules_that_read_redacted_values_are_not_reevaluated(
    recorded: Recorded, tmp_path: Path
) -> None:
    def needs_a_token(target: Path) -> None:
        cond = "          when:\n            headers: [{name: authorization, prefix: 'Bearer '}]\n"
        _replace(
            target / "public.yaml", "          effect: allow\n", "          effect: allow\n" + cond
        )

    result = _replay(_candidate(recorded, tmp_path, needs_a_token), recorded.log)
    assert result.not_reevaluable[REDACTED_INPUT] == 1  # the ping that sent an authorization
    assert result.changed == {}


def test_presence_conditions_still_replay_on_redacted_values(
    recorded: Recorded, tmp_path: Path
) -> None:
    def no_cookies(target: Path) -> None:
        rule = (
            "        - name: no-cookies\n          effect: deny\n"
            "          when: {headers: [{name: cookie, present: true}]}\n"
        )
        _replace(target / "public.yaml", "      rules:\n", "      rules:\n" + rule)

    result = _replay(_candidate(recorded, tmp_path, no_cookies), recorded.log)
    assert REDACTED_INPUT not in result.not_reevaluable
    [group] = result.groups.values()
    assert (group.kind, group.cause, group.count) == ("allow_to_deny", "no-cookies", 1)


def test_a_deny_rule_in_monitor_mode_is_a_monitor_change(
    recorded: Recorded, tmp_path: Path
) -> None:
    def watch_pings(target: Path) -> None:
        rule = "        - {name: no-pings, effect: deny, mode: monitor}\n"
        _replace(target / "public.yaml", "      rules:\n", "      rules:\n" + rule)

    result = _replay(_candidate(recorded, tmp_path, watch_pings), recorded.log)
    assert dict(result.changed) == {"monitor": 1}  # still allowed, now a would-be denial
    [group] = result.groups.values()
    assert (group.recorded_route, group.cause) == ("public/ping", "anyone")


def test_api_key_callers_reauthenticate_from_the_recorded_hash(recorded: Recorded) -> None:
    first = json.loads(recorded.log.read_bytes().split(b"\n")[1])  # after the start checkpoint
    assert first["headers"]["x-api-key"].startswith("sha256:")
    view = view_of(first)
    primed = evaluate(load_candidate(recorded.policies), view, "r-1")
    assert (primed.allowed, primed.principal, primed.credential) == (True, "reader", "api_key")
    unprimed = evaluate(load_directory(recorded.policies), view_of(first), "r-2")
    assert (unprimed.status, unprimed.reason) == (401, "invalid_api_key")


def test_a_bundle_is_a_candidate_too(recorded: Recorded, tmp_path: Path) -> None:
    bundle = tmp_path / "policies.tar.gz"
    build_bundle(recorded.policies, bundle, name="shop", version="2")
    assert _replay(bundle, recorded.log).changed == {}


def test_a_missing_log_is_a_clear_error(recorded: Recorded, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"cannot read audit log .*missing\.log"):
        _replay(recorded.policies, tmp_path / "missing.log")


def _cli(*args: str) -> int:
    parser = argparse.ArgumentParser()
    replay_cli.add_parser(parser.add_subparsers(dest="command"))
    return replay_cli.run(parser.parse_args(["replay", *args]))


def test_cli_json_report_and_exit_codes(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def deny_everything(target: Path) -> None:
        _replace(target / "orders.yaml", "principals: [reader, admin]", "principals: [nobody]")

    candidate = _candidate(recorded, tmp_path, deny_everything)
    log = str(recorded.log)
    assert _cli("--policies", str(candidate), "--audit-log", log, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["changed_by_kind"] == {"allow_to_deny": 3}
    assert report["totals"]["malformed"] == MALFORMED_LINES
    assert [len(c["examples"]) for c in report["changes"]] == [3]
    flags = ("--fail-on-change", "--examples", "0")
    assert _cli("--policies", str(candidate), "--audit-log", log, *flags) == 1
    assert "allow→deny, 3 records" in capsys.readouterr().out
    assert _cli("--policies", str(recorded.policies), "--audit-log", log, *flags) == 0


def test_cli_refuses_a_broken_candidate_and_a_missing_log(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(recorded.policies, broken)
    _replace(broken / "orders.yaml", "effect: allow", "effect: maybe")
    _replace(broken / "public.yaml", "effect: allow", "effect: perhaps")
    assert _cli("--policies", str(broken), "--audit-log", str(recorded.log)) == 2
    err = capsys.readouterr().err
    assert "orders.yaml" in err
    assert "public.yaml" in err  # every error, not just the first
    assert "does not load" in err
    assert _cli("--policies", str(recorded.policies), "--audit-log", str(tmp_path / "no")) == 2
    assert "cannot read audit log" in capsys.readouterr().err


def test_cli_as_a_subprocess(recorded: Recorded, tmp_path: Path) -> None:
    def only_admins_read(target: Path) -> None:
        _replace(target / "orders.yaml", "principals: [reader, admin]", "principals: [admin]")

    candidate = _candidate(recorded, tmp_path, only_admins_read)
    done = subprocess.run(
        [sys.executable, "-m", "guardrail_authz.rollout.replay_cli", "--policies",
         str(candidate), "--audit-log", str(recorded.log), "--fail-on-change"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "allow→deny, 2 records: orders/read → orders/read, no_rule_matched" in done.stdout
    assert "principal=reader" in done.stdout
