"""Write a policy test run as JUnit XML for CI: a testsuite per test file, a testcase per case."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from guardrail_authz.rollout.testrun import CaseResult, RunReport

# Characters XML 1.0 cannot carry at all, even escaped (control characters, lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
FAILURE_TYPE = "ExpectationFailed"


def _text(value: str) -> str:
    """Text safe for XML 1.0: characters it cannot carry become U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def _seconds(value: float) -> str:
    return f"{value:.6f}"


def build(report: RunReport, name: str = "guardrail-authz test") -> ET.Element:
    """The <testsuites> element of a run."""
    by_file: dict[str, list[CaseResult]] = {}
    for result in report.results:
        by_file.setdefault(result.case.file, []).append(result)
    failures = report.failed
    tests = len(report.results)
    root = ET.Element("testsuites", name=_text(name))
    for file, results in by_file.items():
        _suite(root, file, results)
    if report.require_coverage:
        missing = report.uncovered
        tests += len(report.routes)
        failures += len(missing)
        _coverage(root, report.routes, missing)
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("time", _seconds(report.seconds))
    return root


def _suite(root: ET.Element, file: str, results: list[CaseResult]) -> None:
    failed = sum(not r.passed for r in results)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_text(file),
        tests=str(len(results)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=_seconds(sum(r.seconds for r in results)),
        file=_text(file),
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_text(r.suite.name),
            name=_text(r.case.name),
            time=_seconds(r.seconds),
            file=_text(r.case.file),
            line=str(r.case.line),
        )
        if r.passed:
            continue
        failure = ET.SubElement(
            case, "failure", message=_text("; ".join(r.failures)), type=FAILURE_TYPE
        )
        body = [*r.failures, "", "trace:", *(f"  {step}" for step in r.trace)]
        failure.text = _text("\n".join(body))


def _coverage(root: ET.Element, routes: tuple[str, ...], missing: tuple[str, ...]) -> None:
    """With --require-coverage: a testcase per route, failed when no case reaches it."""
    suite = ET.SubElement(
        root,
        "testsuite",
        name="coverage",
        tests=str(len(routes)),
        failures=str(len(missing)),
        errors="0",
        skipped="0",
        time=_seconds(0.0),
    )
    for route in routes:
        case = ET.SubElement(
            suite, "testcase", classname="coverage", name=_text(route), time=_seconds(0.0)
        )
        if route in missing:
            msg = f"no test case reaches route {route}"
            ET.SubElement(case, "failure", message=_text(msg), type="Uncovered").text = msg


def write(report: RunReport, path: Path) -> None:
    """Write the run's JUnit XML (UTF-8, with an XML declaration) to a file."""
    tree = ET.ElementTree(build(report))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def write_errors(errors: list[str], path: Path) -> None:
    """JUnit XML for a run that could not start: one errored testcase listing every error."""
    root = ET.Element("testsuites", name="guardrail-authz test", tests="1", failures="0")
    root.set("errors", "1")
    suite = ET.SubElement(root, "testsuite", name="load", tests="1", failures="0", errors="1")
    case = ET.SubElement(suite, "testcase", classname="load", name="load tests and policies")
    message = f"{len(errors)} error(s): tests or policies could not be loaded"
    ET.SubElement(case, "error", message=message, type="LoadError").text = _text("\n".join(errors))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
