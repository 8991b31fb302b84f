"""The `guardrail-authz bundle` command: validate a policy directory and pack it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.rollout.bundle import build_bundle, external_files, label_errors, load_bundle

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bundle DIR --out FILE --name NAME --version VERSION`."""
    b = sub.add_parser(
        "bundle",
        help="validate a policy directory and pack it into a versioned .tar.gz bundle",
        description="Pack every visible file of a policy directory (policies, OpenAPI, JWKS "
        "and test files) into a reproducible tar.gz with a manifest of SHA-256 digests. "
        "The directory must validate first.",
    )
    b.add_argument("directory", type=Path, help="policy directory (as mounted from a ConfigMap)")
    b.add_argument("--out", type=Path, required=True, help="archive to write (.tar.gz or .tgz)")
    b.add_argument("--name", required=True, help="bundle name (lowercase, digits, '-', '.', '_')")
    b.add_argument("--version", required=True, help="bundle version, e.g. 2026.11.22-1")
    b.add_argument(
        "--keys",
        type=Path,
        action="append",
        default=[],
        help="ApiKeySet file or directory the policies need to validate (not packed); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    """Validate, build and re-open the bundle; print what was written."""
    directory: Path = args.directory
    out: Path = args.out
    keys: list[Path] = args.keys
    problems = label_errors(args.name, args.version)
    if problems:
        for problem in problems:
            print(f"guardrail-authz bundle: {problem}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    try:
        snapshot = load_directory(directory, keys)
    except PolicyLoadError as exc:
        print(exc.render())  # noqa: T201 - the same listing as `guardrail-authz validate`
        print(f"{len(exc.errors) + exc.dropped} error(s) in {directory}", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    outside = external_files(snapshot, directory)
    if outside:
        for path in outside:
            msg = f"{path}: read by a policy but outside {directory}; a bundle must hold it"
            print(msg, file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    try:
        info = build_bundle(directory, out, name=args.name, version=args.version)
        bundled, _ = load_bundle(out, keys)
    except PolicyLoadError as exc:
        print(exc.render(), file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    summary = f"{info.name}@{info.version}, {len(info.files)} files, sha256 {info.sha256}"
    print(f"wrote {out}: {summary}")  # noqa: T201
    print(f"policy version: {bundled.version}")  # noqa: T201
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command alone (until it is wired into `guardrail-authz`)."""
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
