"""`guardrail-authz test`: GuardrailTest parsing, case runs, reports, coverage and JUnit XML."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from guardrail_authz.engine.decision import Decision, WouldDeny
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout import testrun_cli
from guardrail_authz.rollout.bundle import build_bundle
from guardrail_authz.rollout.testcases import discover, parse_text
from guardrail_authz.rollout.testrun import check, run_suites

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "policies"

# A small policy of our own: a monitor-mode deny rule, mutations, and two routes.
SHOP = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: shop}
spec:
  apiKeys:
    keys:
      - sha256: cc551f29bff81915d8d2765567f3c5f73f4b9ebc70f37757eefe31734bde1421
        principal: reader
        roles: [reader]
  routes:
    - name: items
      action: items.read
      match: {methods: [GET], paths: [/items]}
      rules:
        - name: no-legacy-clients
          effect: deny
          mode: monitor
          when:
            headers:
              - {name: user-agent, prefix: legacy}
        - name: readers
          effect: allow
          when: {roles: [reader]}
      onAllow:
        requestHeaders:
          set: [{name: x-env, value: prod}]
        responseHeaders:
          add: [{name: cache-control, value: no-store}]
        queryParameters:
          set: [{name: v, value: "2"}]
          remove: [debug]
    - name: delete
      action: items.delete
      match: {methods: [DELETE], paths: ["/items/{id}"]}
      rules:
        - name: admins
          effect: allow
          when: {roles: [admin]}
"""

READER = {"x-api-key": "demo-reader-key"}


def _suite(name: str, cases: str) -> str:
    head = f"apiVersion: guardrail-authz/v1\nkind: GuardrailTest\nmetadata: {{name: {name}}}\n"
    return head + "spec:\n  cases:\n" + cases


PASSING = _suite(
    "shop-tests",
    """\
    - name: a reader lists items
      request: {method: GET, path: "/items?debug=1", headers: {x-api-key: demo-reader-key}}
      expect:
        outcome: allow
        status: 200
        route: shop/items
        principal: reader
        headers: {x-env: prod, x-guardrail-principal: reader, x-other: null}
        removedHeaders: [x-api-key]
        responseHeaders: {cache-control: no-store}
        query: {set: {v: "2"}, removed: [debug]}
        enforced: true
""",
)

FAILING = _suite(
    "shop-failing",
    """\
    - name: readers are wrongly expected to be refused
      request: {method: GET, path: /items, headers: {x-api-key: demo-reader-key}}
      expect: {outcome: deny, status: 403, principal: reader}
""",
)


def _shop(tmp_path: Path, **tests: str) -> Path:
    """A policy directory with the shop policy and the given test files (name → text)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "shop.yaml").write_text(SHOP)
    for name, text in tests.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


@pytest.fixture(scope="module")
def shop_snapshot(tmp_path_factory: pytest.TempPathFactory) -> PolicySnapshot:
    """The shop policy, compiled once for the expectation tests."""
    directory = tmp_path_factory.mktemp("shop")
    (directory / "shop.yaml").write_text(SHOP)
    return load_directory(directory)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    sub = parser.add_subparsers(dest="command", required=True)
    testrun_cli.add_parser(sub)
    return parser.parse_args(["test", *argv])


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = testrun_cli.run(_args(*argv))
    out = capsys.readouterr().out
    return code, out


# --- the shipped tests ---------------------------------------------------------------------


def test_every_shipped_policy_has_a_test_file() -> None:
    policies = {"customers", "orders", "profile", "public", "query", "search"}
    assert {p.name for p in SHIPPED.glob("*-tests.yaml")} == {f"{n}-tests.yaml" for n in policies}


def test_shipped_tests_pass_with_required_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, str(SHIPPED), "--require-coverage")
    assert code == testrun_cli.EXIT_PASSED, out
    assert "FAIL" not in out
    assert "coverage: 9/9 routes have a case" in out
    summary = out.splitlines()[-2]
    assert summary.split()[1:4] == ["passed,", "0", "failed"]
    assert int(summary.split()[0]) >= 30


def test_shipped_tests_do_not_change_the_policy_version(tmp_path: Path) -> None:
    only_policies = tmp_path / "p"
    only_policies.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        if not path.name.endswith("-tests.yaml"):
            (only_policies / path.name).write_text(path.read_text())
    assert load_directory(only_policies).version == load_directory(SHIPPED).version


def test_cli_subprocess_runs_shipped_tests_and_writes_junit(tmp_path: Path) -> None:
    report = tmp_path / "out" / "junit.xml"
    cmd = [sys.executable, "-m", "guardrail_authz.rollout.testrun_cli", "policies"]
    done = subprocess.run(
        [*cmd, "--require-coverage", "--junit", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS orders-tests.yaml:" in done.stdout
    root = ET.parse(report).getroot()  # noqa: S314 - our own file
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {
        "customers-tests.yaml",
        "orders-tests.yaml",
        "profile-tests.yaml",
        "public-tests.yaml",
        "query-tests.yaml",
        "search-tests.yaml",
        "coverage",
    }
    cases = [c for c in root.iter("testcase") if c.get("classname") != "coverage"]
    assert root.get("failures") == "0"
    assert root.get("tests") == str(len(cases) + 9)  # every case, and a testcase per route
    assert {c.get("classname") for c in suites["orders-tests.yaml"]} == {"orders-tests"}


# --- failures --------------------------------------------------------------------------------


def test_failing_case_exits_1_with_the_failed_expectations_and_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, ok=PASSING, bad=FAILING)
    code, out = _cli(capsys, str(directory))
    assert code == testrun_cli.EXIT_FAILED
    assert "PASS ok.yaml:6 a reader lists items" in out
    assert "FAIL bad.yaml:6 readers are wrongly expected to be refused" in out
    failed = out.split("FAIL bad.yaml:6", 1)[1]
    assert "    outcome: expected deny, got allow" in failed
    assert "    status: expected 403, got 200" in failed
    assert "principal:" not in failed  # an expectation that held is not listed
    # The trace printed is the one evaluate() wrote for this request.
    suites = discover(directory, [], ErrorSink())
    result = run_suites(load_directory(directory), suites).results[-1]
    assert result.trace
    assert "    trace:\n" + "\n".join(f"      {t}" for t in result.trace) in out
    assert "1 passed, 1 failed in " in out


def test_passing_case_prints_no_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, str(_shop(tmp_path, ok=PASSING)))
    assert code == 0, out
    assert "trace:" not in out


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, str(_shop(tmp_path, ok=PASSING, bad=FAILING)), "--json")
    assert code == 1
    data = json.loads(out)
    assert (data["ok"], data["passed"], data["failed"]) == (False, 1, 1)
    bad = next(c for c in data["cases"] if not c["passed"])
    assert bad["file"] == "bad.yaml"
    assert bad["suite"] == "shop-failing"
    assert "status: expected 403, got 200" in bad["failures"]
    assert bad["trace"]
    assert bad["decision"]["status"] == 200
    assert data["coverage"]["uncovered"] == ["shop/delete"]


@pytest.mark.parametrize(
    ("expect", "failure"),
    [
        ("{outcome: allow, reason: denied}", "reason: expected denied, got allowed"),
        ("{outcome: allow, route: shop/delete}", "route: expected shop/delete, got shop/items"),
        ("{outcome: allow, principal: null}", "principal: expected none, got reader"),
        ("{outcome: allow, credential: mtls}", "credential: expected mtls, got api_key"),
        ("{outcome: allow, rule: admins}", "rule: expected admins, got readers"),
        ("{outcome: allow, headers: {x-env: dev}}", "headers.x-env: expected 'dev', got 'prod'"),
        ("{outcome: allow, headers: {x-env: null}}", "headers.x-env: expected not set, got 'prod'"),
        ("{outcome: allow, headers: {x-no: a}}", "headers.x-no: expected 'a', got not set"),
        (
            "{outcome: allow, removedHeaders: [x-env]}",
            "removedHeaders: x-env is not removed (removed: x-api-key)",
        ),
        (
            "{outcome: allow, responseHeaders: {cache-control: public}}",
            "responseHeaders.cache-control: expected 'public', got 'no-store'",
        ),
        ("{outcome: allow, query: {set: {v: '3'}}}", "query.set.v: expected 3, got 2"),
        (
            "{outcome: allow, query: {removed: [page]}}",
            "query.removed: page is not removed (removed: debug)",
        ),
        ("{outcome: allow, reasons: [x]}", "reasons: x not among allowed_by_rule:readers"),
        ("{outcome: allow, actions: [sql:select]}", "actions: expected sql:select, got none"),
        ("{outcome: allow, enforced: false}", "enforced: expected false, got true"),
        (
            "{outcome: allow, wouldDeny: denied_by_rule:no-legacy-clients}",
            "wouldDeny: expected denied_by_rule:no-legacy-clients among monitored denials, "
            "got none",
        ),
    ],
)
def test_each_expectation_reports_what_did_not_hold(
    shop_snapshot: PolicySnapshot, expect: str, failure: str
) -> None:
    request = f"{{method: GET, path: /items, headers: {json.dumps(READER)}}}"
    text = _suite("t", f"    - name: c\n      request: {request}\n      expect: {expect}\n")
    sink = ErrorSink()
    suites = parse_text(text, "t.yaml", sink, only_tests=True)
    assert not sink, sink.errors
    result = run_suites(shop_snapshot, suites).results[0]
    assert result.failures == (failure,)


def test_deny_response_headers_are_the_denial_headers() -> None:
    d = Decision(False, 401, "no_identity", "id", "v", deny_headers=[("www-authenticate", "x")])
    sink = ErrorSink()
    text = _suite(
        "t",
        "    - name: c\n      request: {method: GET, path: /}\n"
        "      expect:\n"
        "        outcome: deny\n"
        "        responseHeaders: {www-authenticate: x, retry-after: null}\n",
    )
    expect = parse_text(text, "t.yaml", sink, only_tests=True)[0].cases[0].expect
    assert check(expect, d) == []
    d.deny_headers.append(("retry-after", "1"))
    assert check(expect, d) == ["responseHeaders.retry-after: expected not set, got '1'"]


def test_monitor_mode_expectations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = """\
    - name: a legacy client would be denied once the rule enforces
      request:
        method: GET
        path: /items
        headers: {x-api-key: demo-reader-key, user-agent: legacy/1.0}
      expect:
        outcome: allow
        enforced: false
        wouldDeny: denied_by_rule:no-legacy-clients
    - name: a current client is not affected
      request: {method: GET, path: /items, headers: {x-api-key: demo-reader-key, user-agent: b/2}}
      expect: {outcome: allow, enforced: true}
    - name: a legacy client wrongly expected to be enforced
      request:
        {method: GET, path: /items, headers: {x-api-key: demo-reader-key, user-agent: legacy}}
      expect: {outcome: allow, enforced: true}
"""
    code, out = _cli(capsys, str(_shop(tmp_path, monitor=_suite("monitor", cases))))
    assert code == 1
    assert out.count("PASS ") == 2
    assert "FAIL monitor.yaml:18 a legacy client wrongly expected to be enforced" in out
    assert "    enforced: expected true, got false" in out


def test_would_deny_matches_any_monitored_reason() -> None:
    d = Decision(True, 200, "allowed", "id", "v")
    d.monitored = [WouldDeny(403, "a", "r1", "rule"), WouldDeny(403, "b", None, "route")]
    sink = ErrorSink()
    text = _suite(
        "t",
        "    - name: c\n      request: {method: GET, path: /}\n"
        "      expect: {outcome: allow, wouldDeny: b, enforced: false}\n",
    )
    expect = parse_text(text, "t.yaml", sink, only_tests=True)[0].cases[0].expect
    assert check(expect, d) == []
    d.monitored = d.monitored[:1]
    assert check(expect, d) == ["wouldDeny: expected b among monitored denials, got a"]


# --- coverage --------------------------------------------------------------------------------


def test_uncovered_routes_are_listed_and_fail_only_when_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, ok=PASSING)
    code, out = _cli(capsys, str(directory))
    assert code == 0
    assert out.splitlines()[-1] == "coverage: 1/2 routes have a case; no case for: shop/delete"
    code, out = _cli(capsys, str(directory), "--require-coverage")
    assert code == testrun_cli.EXIT_FAILED
    assert out.splitlines()[-1] == (
        "FAIL coverage: 1/2 routes have a case; no case for: shop/delete"
    )
    assert "1 passed, 0 failed" in out


def test_a_denied_request_still_covers_its_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deny = """\
    - name: a reader may not delete
      request: {method: DELETE, path: /items/7, headers: {x-api-key: demo-reader-key}}
      expect: {outcome: deny, status: 403, route: shop/delete}
    - name: unknown paths reach no route
      request: {method: GET, path: /nowhere}
      expect: {outcome: deny, reason: route_not_found, route: null}
"""
    directory = _shop(tmp_path, ok=PASSING, deny=_suite("deny", deny))
    code, out = _cli(capsys, str(directory), "--require-coverage")
    assert code == 0, out
    assert out.splitlines()[-1] == "coverage: 2/2 routes have a case"


# --- JUnit XML -------------------------------------------------------------------------------


def test_junit_xml_counts_and_failure_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, ok=PASSING, bad=FAILING)
    report = tmp_path / "junit.xml"
    code, _ = _cli(capsys, str(directory), "--junit", str(report))
    assert code == 1
    root = ET.parse(report).getroot()  # noqa: S314 - our own file
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == (
        "testsuites",
        "2",
        "1",
        "0",
    )
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"ok.yaml", "bad.yaml"}  # one per test file, no coverage suite
    bad = suites["bad.yaml"]
    assert (bad.get("tests"), bad.get("failures")) == ("1", "1")
    (case,) = bad.findall("testcase")
    assert case.get("classname") == "shop-failing"
    assert case.get("name") == "readers are wrongly expected to be refused"
    assert float(case.get("time") or "x") >= 0
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == (
        "outcome: expected deny, got allow; status: expected 403, got 200"
    )
    text = failure.text or ""
    assert text.startswith("outcome: expected deny, got allow\nstatus: expected 403, got 200\n")
    assert "\ntrace:\n  " in text
    (ok_case,) = suites["ok.yaml"].findall("testcase")
    assert ok_case.find("failure") is None


def test_junit_escapes_names_and_drops_characters_xml_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = _suite(
        "odd",
        """\
    - name: "<b>&\\"quoted\\" \\x1b[31m"
      request: {method: GET, path: /items}
      expect: {outcome: allow}
""",
    )
    report = tmp_path / "junit.xml"
    code, _ = _cli(capsys, str(_shop(tmp_path, odd=odd)), "--junit", str(report))
    assert code == 1
    assert "<b>" not in report.read_text()
    case = ET.parse(report).getroot().find("testsuite/testcase")  # noqa: S314 - our own file
    assert case is not None
    assert case.get("name") == '<b>&"quoted" \ufffd[31m'


def test_junit_coverage_suite_when_coverage_is_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "junit.xml"
    args = (str(_shop(tmp_path, ok=PASSING)), "--require-coverage", "--junit", str(report))
    assert _cli(capsys, *args)[0] == 1
    root = ET.parse(report).getroot()  # noqa: S314 - our own file
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    coverage = root.find("testsuite[@name='coverage']")
    assert coverage is not None
    failed = [c.get("name") for c in coverage if c.find("failure") is not None]
    assert failed == ["shop/delete"]


def test_junit_records_load_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _shop(tmp_path, bad=_suite("bad", "    - name: x\n"))
    report = tmp_path / "junit.xml"
    code, _ = _cli(capsys, str(directory), "--junit", str(report))
    assert code == testrun_cli.EXIT_UNLOADABLE
    root = ET.parse(report).getroot()  # noqa: S314 - our own file
    error = root.find("testsuite/testcase/error")
    assert error is not None
    assert root.get("errors") == "1"
    assert "bad.yaml:6: spec.cases[0]: missing required field 'spec.cases[0].request'" in (
        error.text or ""
    )


# --- load errors -------------------------------------------------------------------------------

MALFORMED = """\
apiVersion: guardrail-authz/v2
kind: GuardrailTest
metadata: {name: Bad_Name}
spec:
  cases:
    - name: one
      request: {method: GET, headers: {x-n: 5}, body: a, json: {a: 1}}
      expect: {outcome: maybe, status: "403", colour: red}
    - name: one
      request: {method: GET, path: items, destinationPort: 70000}
      expect: {outcome: allow, enforced: "no", removedHeaders: ["bad header"], credential: oauth}
    - request: {method: GET, path: /items}
    - name: two
      request: {method: GET, path: /items}
      expect: {outcome: allow, query: {set: {v: 2}, drop: [x]}}
  extra: 1
"""


def test_malformed_tests_list_every_error_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _cli(capsys, str(_shop(tmp_path, bad=MALFORMED)))
    assert code == testrun_cli.EXIT_UNLOADABLE
    expected = [
        "bad.yaml:1: apiVersion: unsupported apiVersion 'guardrail-authz/v2'",
        "bad.yaml:3: metadata.name: 'Bad_Name' is not a valid name",
        "bad.yaml:7: spec.cases[0].request: missing required field 'spec.cases[0].request.path'",
        "bad.yaml:7: spec.cases[0].request.headers.x-n: must be a string, got int",
        "bad.yaml:7: spec.cases[0].request.json: give either body or json, not both",
        "bad.yaml:8: spec.cases[0].expect.outcome: must be allow or deny, got 'maybe'",
        "bad.yaml:8: spec.cases[0].expect.status: must be an integer, got str",
        "bad.yaml:8: spec.cases[0].expect.colour: unknown field 'colour'",
        "bad.yaml:10: spec.cases[1].request.path: must start with '/'",
        "bad.yaml:10: spec.cases[1].request.destinationPort: must be between 1 and 65535",
        "bad.yaml:11: spec.cases[1].expect.enforced: must be true or false, got str",
        "bad.yaml:11: spec.cases[1].expect.removedHeaders[0]: 'bad header' is not a header name",
        "bad.yaml:11: spec.cases[1].expect.credential: must be one of api_key, jwt, mtls or null",
        "bad.yaml:9: spec.cases[1].name: case 'one' already defined at bad.yaml:6",
        "bad.yaml:12: spec.cases[2]: missing required field 'spec.cases[2].name'",
        "bad.yaml:12: spec.cases[2]: missing required field 'spec.cases[2].expect'",
        "bad.yaml:15: spec.cases[3].expect.query.set.v: must be a string, got int (quote it)",
        "bad.yaml:15: spec.cases[3].expect.query.drop: unknown field 'drop'",
        "bad.yaml:16: spec.extra: unknown field 'extra'",
    ]
    lines = out.splitlines()
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, out)
    assert len(lines) == len(expected)
    assert lines == sorted(lines, key=lambda s: int(s.split(":")[1]))  # sorted by line


def test_policy_and_test_errors_are_reported_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, bad=_suite("bad", "    - name: x\n      expect: {}\n"))
    (directory / "broken.yaml").write_text(SHOP.replace("effect: deny", "effect: maybe"))
    code, out = _cli(capsys, str(directory))
    assert code == 2
    assert "bad.yaml:6: spec.cases[0]: missing required field 'spec.cases[0].request'" in out
    assert "broken.yaml:16: spec.routes[0].rules[0].effect:" in out


def test_yaml_syntax_error_in_a_test_file_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, bad=PASSING + "    - name: [unclosed\n")
    code, out = _cli(capsys, str(directory))
    assert code == 2
    assert out.count("bad.yaml:") == 1
    assert "invalid YAML" in out


def test_a_429_expectation_is_refused_as_untestable_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = """\
    - name: the sixth call in a second is limited
      request: {method: GET, path: /items, headers: {x-api-key: demo-reader-key}}
      expect: {outcome: deny, status: 429}
    - name: limited by reason
      request: {method: GET, path: /items, headers: {x-api-key: demo-reader-key}}
      expect: {outcome: deny, reason: rate_limited}
"""
    code, out = _cli(capsys, str(_shop(tmp_path, limits=_suite("limits", cases))))
    assert code == testrun_cli.EXIT_UNLOADABLE
    assert "FAIL" not in out
    assert "PASS" not in out
    assert (
        "limits.yaml:8: spec.cases[0].expect.status: a 429 cannot be expected: rate limits are "
        "not applied when tests run offline; test rate limits against a running server "
        "[expect.offline]"
    ) in out
    assert "limits.yaml:11: spec.cases[1].expect.reason: reason 'rate_limited' cannot" in out


def test_no_tests_found_is_a_load_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _shop(tmp_path)
    code, out = _cli(capsys, str(directory))
    assert code == 2
    assert f"no GuardrailTest document found in {directory} [tests.none]" in out


def test_missing_policy_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, str(tmp_path / "nowhere"))
    assert code == 2
    assert "does not exist" in out
    assert "tests.none" not in out


# --- tests kept elsewhere, bundles -------------------------------------------------------------


def test_tests_kept_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _shop(tmp_path)
    elsewhere = tmp_path / "suite"
    elsewhere.mkdir()
    (elsewhere / "a.yaml").write_text(PASSING)
    (elsewhere / "notes.txt").write_text("not yaml")
    single = tmp_path / "single.yml"
    single.write_text(FAILING)
    code, out = _cli(capsys, str(directory), "--tests", str(elsewhere), "--tests", str(single))
    assert code == 1
    assert f"PASS {elsewhere / 'a.yaml'}:6 a reader lists items" in out
    assert f"FAIL {single}:6 readers are wrongly expected to be refused" in out


def test_a_test_file_named_explicitly_holds_only_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _shop(tmp_path, ok=PASSING)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(PASSING + "---\n" + SHOP)
    code, out = _cli(capsys, str(directory), "--tests", str(mixed), "--tests", "missing.yaml")
    assert code == 2
    assert f"{mixed}:19: kind: expected a GuardrailTest document, got kind 'GuardrailPolicy'" in out
    assert "missing.yaml: test path does not exist [tests.missing]" in out


def test_a_bundle_runs_the_tests_it_carries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "shop.tgz"
    build_bundle(_shop(tmp_path, ok=PASSING), bundle, name="shop", version="1")
    code, out = _cli(capsys, str(bundle))
    assert code == 0, out
    assert "PASS ok.yaml:6 a reader lists items" in out
    (tmp_path / "broken.tgz").write_bytes(b"not a tarball")
    code, out = _cli(capsys, str(tmp_path / "broken.tgz"))
    assert code == 2
    assert "broken.tgz" in out
    assert "tests.none" not in out


def test_a_token_whose_keys_are_only_served_remotely_fails_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # header {"alg":"EdDSA","kid":"demo"}: the profile policy's keys sit behind a JWKS uri
    token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImRlbW8ifQ.eyJzdWIiOiJhbGljZSJ9.c2ln"
    case = f"""\
    - name: a signed-in caller reads the profile
      request: {{method: GET, path: /api/profile, headers: {{authorization: Bearer {token}}}}}
      expect: {{outcome: allow}}
"""
    tests = tmp_path / "jwt.yaml"
    tests.write_text(_suite("jwt", case))
    code, out = _cli(capsys, str(SHIPPED), "--tests", str(tests))
    assert code == 1
    failed = out.split(f"FAIL {tests}:6 a signed-in caller reads the profile\n", 1)[1]
    assert failed.startswith(
        "    outcome: expected allow, got deny\n"
        "    note: offline, only inline and file JWKS are known; keys served at a jwks uri or "
        "found by discovery are not fetched\n"
    )
