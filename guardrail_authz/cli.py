"""The `guardrail-authz` command: serve, validate and eval."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from guardrail_authz import logsetup
from guardrail_authz.engine.decision import DecisionIds
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 3


_KEYS_HELP = (
    "an ApiKeySet file, or a directory of them, kept apart from the policies (e.g. a mounted "
    "Secret); reloaded live; repeatable"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardrail-authz", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the ext_authz gRPC server")
    s.add_argument("--policies", type=Path, required=True, help="policy directory (ConfigMap)")
    s.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    s.add_argument("--grpc", default="127.0.0.1:9191", help="gRPC listen HOST:PORT")
    s.add_argument("--http", default="127.0.0.1:9192", help="ops HTTP listen HOST:PORT")
    s.add_argument("--audit-log", type=Path, help="append audit JSON lines here (default stdout)")
    s.add_argument("--reload-interval", type=float, default=1.0, help="seconds between checks")
    s.add_argument("--grace", type=float, default=10.0, help="seconds to drain on SIGTERM")
    s.add_argument("--log-level", default="INFO", help="operational log level (stderr)")
    s.add_argument(
        "--redis",
        metavar="URL",
        help="share rate limits across replicas through this Redis (redis://host:6379/0); "
        "default: buckets in this process",
    )
    s.add_argument(
        "--redis-failure",
        choices=("open", "closed"),
        default="open",
        help="when Redis cannot answer: open lets limited calls through (default), closed "
        "refuses them with 503",
    )
    v = sub.add_parser("validate", help="check a policy directory; print every error")
    v.add_argument("directory", type=Path)
    v.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    e = sub.add_parser("eval", help="decide one request offline and print the decision as JSON")
    e.add_argument("--policies", type=Path, required=True)
    e.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    e.add_argument("--request", required=True, help="request JSON file, or - for stdin")
    t = sub.add_parser("demo-token", help="mint a token of the local stack's demo issuer")
    t.add_argument("--sub", required=True, help="the subject (becomes the principal)")
    t.add_argument("--scope", help="space-separated scopes (the 'scope' claim)")
    t.add_argument("--ttl", type=int, default=300, help="seconds of validity (negative: expired)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.directory, args.keys)
    if args.command == "eval":
        return _eval(args.policies, args.request, args.keys)
    if args.command == "demo-token":
        from guardrail_authz.demo.idp import mint  # noqa: PLC0415 - only this command needs it

        print(mint(args.sub, args.scope, args.ttl))  # noqa: T201 - the token, and only it
        return 0
    return _serve(args)


def _validate(directory: Path, keys: list[Path]) -> int:
    try:
        snap = load_directory(directory, keys)
    except PolicyLoadError as exc:
        print(exc.render())  # noqa: T201
        print(f"{len(exc.errors) + exc.dropped} error(s) in {directory}", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    names = ", ".join(f"{n}@{v}" for n, v in snap.policies)
    print(f"ok: {len(snap.policies)} policies ({names}), {snap.route_count} routes")  # noqa: T201
    print(f"version: {snap.version}")  # noqa: T201
    return EXIT_OK


def _eval(directory: Path, request: str, keys: list[Path]) -> int:
    try:
        raw = sys.stdin.read() if request == "-" else Path(request).read_text(encoding="utf-8")
        data: Any = json.loads(raw)
        view = RequestView.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot read request {request}: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    if view is None:
        print(f"error: request {request} must be a JSON object", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    try:
        snap = load_directory(directory, keys)
    except PolicyLoadError as exc:
        print(exc.render(), file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    decision = evaluate(snap, view, DecisionIds().next())
    print(json.dumps(decision.to_json(), indent=2))  # noqa: T201
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _serve(args: argparse.Namespace) -> int:
    from guardrail_authz.server.app import BindError, ServeConfig, serve  # noqa: PLC0415

    logsetup.configure(args.log_level)
    config = ServeConfig(
        policies=args.policies,
        grpc_addr=args.grpc,
        http_addr=args.http,
        audit_log=args.audit_log,
        reload_interval=args.reload_interval,
        grace_seconds=args.grace,
        redis_url=args.redis,
        redis_fail_open=args.redis_failure == "open",
        keys=tuple(args.keys),
    )
    try:
        asyncio.run(serve(config))
    except BindError as exc:
        print(f"guardrail-authz: {exc} (is another instance running?)", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except ValueError as exc:
        print(f"guardrail-authz: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
