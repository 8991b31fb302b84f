"""`guardrail-authz test DIR`: run a policy directory's tests; report as text, JSON or JUnit."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from guardrail_authz.policy.errors import ErrorSink, PolicyError, PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout import junit
from guardrail_authz.rollout.bundle import is_bundle, load_source, open_bundle
from guardrail_authz.rollout.testcases import CaseSuite, discover
from guardrail_authz.rollout.testrun import render, run_suites, to_json

EXIT_PASSED = 0
EXIT_FAILED = 1  # a case failed, or a route has no case under --require-coverage
EXIT_UNLOADABLE = 2  # the tests or the policies could not be loaded

_KEYS_HELP = "an ApiKeySet file, or a directory of them, kept apart from the policies; repeatable"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `test` subcommand."""
    p = sub.add_parser(
        "test",
        help="run the GuardrailTest cases of a policy directory offline",
        description=__doc__,
    )
    p.add_argument("directory", type=Path, help="policy directory (its GuardrailTest files run)")
    p.add_argument(
        "--tests",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a test file, or a directory of them, kept elsewhere; repeatable",
    )
    p.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    p.add_argument(
        "--require-coverage",
        action="store_true",
        help="fail when a route of the loaded policies has no case",
    )
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Load the tests and the policies, run every case, report; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="guardrail-test-") as tmp:
        loaded = _load(args.directory, list(args.tests), list(args.keys), Path(tmp))
    if isinstance(loaded, tuple):
        return _unloadable(args, *loaded)
    snapshot, suites = loaded.snapshot, loaded.suites
    report = run_suites(snapshot, suites, require_coverage=args.require_coverage)
    if args.json:
        print(json.dumps(to_json(report), indent=2))  # noqa: T201 - the report is the output
    else:
        print(render(report))  # noqa: T201 - the report is the output
    if args.junit is not None:
        junit.write(report, args.junit)
    return EXIT_PASSED if report.ok else EXIT_FAILED


@dataclass(frozen=True, slots=True)
class Loaded:
    """A compiled policy source and the test suites to run against it."""

    snapshot: PolicySnapshot
    suites: list[CaseSuite]


def _load(
    source: Path, tests: list[Path], keys: list[Path], scratch: Path
) -> Loaded | tuple[list[PolicyError], int]:
    """The snapshot and suites, or every error found loading either (sorted, deduplicated).

    A bundle's own test files run too: it is extracted (and verified) into `scratch`."""
    sink = ErrorSink()
    errors: list[PolicyError] = []
    dropped = 0
    folder = source
    if is_bundle(source) and source.is_file():
        with contextlib.suppress(PolicyLoadError):  # load_source below reports it
            open_bundle(source, scratch)
            folder = scratch
    suites = discover(folder, tests, sink, label=str(source))
    snapshot: PolicySnapshot | None = None
    try:
        snapshot, _ = load_source(source, keys)
    except PolicyLoadError as exc:
        errors += exc.errors
        dropped += exc.dropped
    errors += sink.errors
    dropped += sink.dropped
    if errors or snapshot is None:
        return sorted(set(errors)), dropped
    return Loaded(snapshot, suites)


def _unloadable(args: argparse.Namespace, errors: list[PolicyError], dropped: int) -> int:
    """Print every load error with file:line field (and record them in the JUnit file)."""
    count = len(errors) + dropped
    if args.json:
        out = {"ok": False, "errors": [_error_json(e) for e in errors], "dropped": dropped}
        print(json.dumps(out, indent=2))  # noqa: T201 - the report is the output
    else:
        print(PolicyLoadError(errors, dropped).render())  # noqa: T201
        print(f"{count} error(s): tests or policies could not be loaded", file=sys.stderr)  # noqa: T201
    if args.junit is not None:
        junit.write_errors([str(e) for e in errors], args.junit)
    return EXIT_UNLOADABLE


def _error_json(e: PolicyError) -> dict[str, object]:
    return {"file": e.file, "line": e.line, "field": e.field, "code": e.code, "message": e.message}


def main(argv: list[str] | None = None) -> int:
    """Run `test` on its own (`python -m guardrail_authz.rollout.testrun_cli DIR ...`)."""
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["test", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
