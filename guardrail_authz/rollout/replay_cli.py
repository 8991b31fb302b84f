"""`guardrail-authz replay`: which recorded decisions a candidate policy set would change."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.rollout.replay import ReplayError, load_candidate, replay_file
from guardrail_authz.rollout.replay_report import render_json, render_text

EXIT_OK = 0
EXIT_CHANGED = 1  # with --fail-on-change: some replayed decision would change
EXIT_UNUSABLE = 2  # the candidate does not load, or the audit log cannot be read

_KEYS_HELP = "an ApiKeySet file, or a directory of them, kept apart from the policies; repeatable"


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `replay` subcommand."""
    p = sub.add_parser(
        "replay",
        help="re-evaluate an audit log against candidate policies; report what would change",
        description=__doc__,
    )
    p.add_argument(
        "--policies",
        type=Path,
        required=True,
        metavar="CANDIDATE",
        help="the candidate: a policy directory or a .tar.gz bundle",
    )
    p.add_argument(
        "--audit-log",
        type=Path,
        required=True,
        metavar="FILE",
        help="audit JSON lines written by `guardrail-authz serve`",
    )
    p.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    p.add_argument(
        "--examples",
        type=_count,
        default=3,
        metavar="N",
        help="examples shown per group of changes (default 3)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 when any replayed decision would change",
    )


def run(args: argparse.Namespace) -> int:
    """Load the candidate, replay the log, print the report; returns the exit code."""
    try:
        snapshot = load_candidate(args.policies, list(args.keys))
    except PolicyLoadError as exc:
        count = len(exc.errors) + exc.dropped
        sys.stderr.write(f"{exc.render()}\n")  # every error, so all are fixed in one round
        sys.stderr.write(f"error: the candidate {args.policies} does not load ({count} errors)\n")
        return EXIT_UNUSABLE
    try:
        result = replay_file(args.audit_log, snapshot, args.examples)
    except ReplayError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_UNUSABLE
    render = render_json if args.json else render_text
    sys.stdout.write(render(result, str(args.policies), str(args.audit_log)))
    if args.json:
        sys.stdout.write("\n")
    return EXIT_CHANGED if args.fail_on_change and result.any_change else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run `replay` on its own (python -m guardrail_authz.rollout.replay_cli ARGS)."""
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
