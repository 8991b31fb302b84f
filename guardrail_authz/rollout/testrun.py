"""Run policy test cases offline, compare decisions with expectations and report the result."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout.testcases import CaseSuite, Expectation, GuardrailCase

DECISION_ID = "policy-test"
_OFFLINE_KEYS = (
    "note: offline, only inline and file JWKS are known; keys served at a jwks uri or found "
    "by discovery are not fetched"
)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's outcome: the expectations that did not hold and the decision's trace."""

    suite: CaseSuite
    case: GuardrailCase
    failures: tuple[str, ...]
    trace: tuple[str, ...]
    route: str | None
    seconds: float
    decision: Decision

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.failures


@dataclass(frozen=True, slots=True)
class RunReport:
    """Every case's result and the routes of the loaded policies."""

    results: tuple[CaseResult, ...]
    routes: tuple[str, ...]
    seconds: float
    require_coverage: bool = False

    @property
    def passed(self) -> int:
        """Number of cases whose expectations all held."""
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        """Number of cases with at least one expectation that did not hold."""
        return len(self.results) - self.passed

    @property
    def uncovered(self) -> tuple[str, ...]:
        """Routes that no case's request reached."""
        hit = {r.route for r in self.results}
        return tuple(route for route in self.routes if route not in hit)

    @property
    def ok(self) -> bool:
        """All cases passed (and, when coverage is required, every route has a case)."""
        return not self.failed and not (self.require_coverage and self.uncovered)


def run_suites(
    snapshot: PolicySnapshot, suites: Sequence[CaseSuite], *, require_coverage: bool = False
) -> RunReport:
    """Evaluate every case of the suites against a snapshot (offline: no rate limits)."""
    start = time.perf_counter()
    results = [run_case(snapshot, suite, case) for suite in suites for case in suite.cases]
    seconds = time.perf_counter() - start
    return RunReport(tuple(results), route_ids(snapshot), seconds, require_coverage)


def run_case(snapshot: PolicySnapshot, suite: CaseSuite, case: GuardrailCase) -> CaseResult:
    """Evaluate one case and compare its decision with what the case expects."""
    start = time.perf_counter()
    trace: list[str] = []
    view = RequestView.from_json(case.request.to_json())
    decision = evaluate(snapshot, view, DECISION_ID, trace=trace)
    failures = check(case.expect, decision)
    if failures and decision.reason == "token_unknown_key":
        failures.append(_OFFLINE_KEYS)
    seconds = time.perf_counter() - start
    return CaseResult(suite, case, tuple(failures), tuple(trace), decision.route, seconds, decision)


def check(expect: Expectation, d: Decision) -> list[str]:
    """The expectation lines that do not hold for a decision (empty: the case passes)."""
    out: list[str] = []
    given = expect.given
    outcome = "allow" if d.allowed else "deny"
    if outcome != expect.outcome:
        out.append(f"outcome: expected {expect.outcome}, got {outcome}")
    for key, want, got in (
        ("status", expect.status, d.status),
        ("reason", expect.reason, d.reason),
        ("route", expect.route, d.route),
        ("action", expect.action, d.action),
        ("rule", expect.rule, d.rule),
        ("principal", expect.principal, d.principal),
        ("credential", expect.credential, d.credential),
        ("enforced", expect.enforced, d.enforced),
    ):
        if key in given and want != got:
            out.append(f"{key}: expected {_show(want)}, got {_show(got)}")
    for reason in expect.reasons:
        if reason not in d.reasons:
            out.append(f"reasons: {reason} not among {_listed(d.reasons)}")
    upstream = {n: v for n, v, _ in d.upstream_headers_set}
    out += _headers("headers", expect.headers, upstream)
    for name in expect.removed_headers:
        if name not in d.upstream_headers_remove:
            out.append(f"removedHeaders: {name} is not removed ({_removed(d)})")
    response = dict(d.deny_headers) if not d.allowed else _response_headers(d)
    out += _headers("responseHeaders", expect.response_headers, response)
    query = dict(d.query_set)
    for name, value in expect.query_set:
        if query.get(name) != value:
            out.append(f"query.set.{name}: expected {_show(value)}, got {_show(query.get(name))}")
    for name in expect.query_removed:
        if name not in d.query_remove:
            out.append(f"query.removed: {name} is not removed (removed: {_listed(d.query_remove)})")
    if expect.would_deny is not None:
        monitored = [w.reason for w in d.monitored]
        if expect.would_deny not in monitored:
            got = _listed(monitored)
            out.append(
                f"wouldDeny: expected {expect.would_deny} among monitored denials, got {got}"
            )
    if "actions" in given and sorted(expect.actions) != sorted(d.actions):
        out.append(f"actions: expected {_listed(expect.actions)}, got {_listed(d.actions)}")
    return out


def _headers(
    label: str, expected: Iterable[tuple[str, str | None]], actual: dict[str, str]
) -> list[str]:
    out: list[str] = []
    for name, want in expected:
        got = actual.get(name)
        if want is None and got is not None:
            out.append(f"{label}.{name}: expected not set, got {got!r}")
        elif want is not None and got != want:
            shown = "not set" if got is None else repr(got)
            out.append(f"{label}.{name}: expected {want!r}, got {shown}")
    return out


def _response_headers(d: Decision) -> dict[str, str]:
    return {n: v for n, v, _ in d.response_headers_add}


def _removed(d: Decision) -> str:
    return "removed: " + _listed(d.upstream_headers_remove)


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _listed(values: Iterable[str]) -> str:
    items = list(values)
    return ", ".join(items) if items else "none"


def route_ids(snapshot: PolicySnapshot) -> tuple[str, ...]:
    """Ids (policy/route) of every route in the snapshot's index, sorted."""
    found: set[str] = set()
    for ports in snapshot.index.hosts.values():
        for trie in ports.values():
            # The trie offers no iteration of its values: walk its nodes (read only).
            stack = [trie._root]
            while stack:
                node = stack.pop()
                for leaves in (node.leaf, node.rest):
                    found.update(route.id for route in leaves.values())
                stack.extend(node.literal.values())
                if node.param is not None:
                    stack.append(node.param)
    return tuple(sorted(found))


def render(report: RunReport) -> str:
    """The readable report: a line per case, failures with their trace, summary, coverage."""
    lines: list[str] = []
    for r in report.results:
        status = "PASS" if r.passed else "FAIL"
        lines.append(f"{status} {r.case.file}:{r.case.line} {r.case.name}")
        if r.passed:
            continue
        lines.extend(f"    {failure}" for failure in r.failures)
        lines.append("    trace:")
        lines.extend(f"      {step}" for step in r.trace or ["(evaluate wrote no trace)"])
    lines.append(summary(report))
    lines.append(coverage_line(report))
    return "\n".join(lines)


def summary(report: RunReport) -> str:
    """E.g. '12 passed, 1 failed in 0.04 s'."""
    return f"{report.passed} passed, {report.failed} failed in {report.seconds:.2f} s"


def coverage_line(report: RunReport) -> str:
    """Which routes of the loaded policies no case reaches."""
    total = len(report.routes)
    missing = report.uncovered
    covered = f"coverage: {total - len(missing)}/{total} routes have a case"
    if not missing:
        return covered
    prefix = "FAIL " if report.require_coverage else ""
    return f"{prefix}{covered}; no case for: {', '.join(missing)}"


def to_json(report: RunReport) -> dict[str, Any]:
    """The report as one JSON object (`guardrail-authz test --json`)."""
    return {
        "ok": report.ok,
        "passed": report.passed,
        "failed": report.failed,
        "seconds": round(report.seconds, 6),
        "cases": [
            {
                "file": r.case.file,
                "line": r.case.line,
                "suite": r.suite.name,
                "name": r.case.name,
                "passed": r.passed,
                "failures": list(r.failures),
                "trace": list(r.trace),
                "seconds": round(r.seconds, 6),
                "decision": r.decision.to_json(),
            }
            for r in report.results
        ],
        "coverage": {
            "routes": list(report.routes),
            "uncovered": list(report.uncovered),
            "required": report.require_coverage,
        },
    }
