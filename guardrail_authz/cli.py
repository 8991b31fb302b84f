"""The `guardrail-authz` command: serve, validate, eval, test, replay, bundle and the admin
commands (status, versions, rollback, resume)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from guardrail_authz import audit_verify, logsetup
from guardrail_authz.admin import client as admin_cli
from guardrail_authz.audit_chain import DEFAULT_KEEP as AUDIT_KEEP
from guardrail_authz.audit_chain import parse_size
from guardrail_authz.engine.decision import DecisionIds
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.rollout import bundle_cli, replay_cli, testrun_cli
from guardrail_authz.rollout.bundle import load_source
from guardrail_authz.rollout.history import DEFAULT_KEEP
from guardrail_authz.server.batch import DEFAULT_WAIT

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
# Commands defined in their own modules, each with add_parser(sub) and run(args).
_COMMAND_MODULES = {
    "test": testrun_cli,
    "replay": replay_cli,
    "bundle": bundle_cli,
    "audit": audit_verify,
}


_KEYS_HELP = (
    "an ApiKeySet file, or a directory of them, kept apart from the policies (e.g. a mounted "
    "Secret); reloaded live; repeatable"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardrail-authz", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the ext_authz gRPC server")
    s.add_argument(
        "--policies",
        type=Path,
        required=True,
        help="policy directory (ConfigMap) or bundle (.tar.gz with a manifest)",
    )
    s.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    s.add_argument("--grpc", default="127.0.0.1:9191", help="gRPC listen HOST:PORT")
    s.add_argument("--http", default="127.0.0.1:9192", help="ops HTTP listen HOST:PORT")
    s.add_argument("--audit-log", type=Path, help="append audit JSON lines here (default stdout)")
    s.add_argument(
        "--audit-max-bytes",
        type=parse_size,
        default=0,
        metavar="SIZE",
        help="rotate the audit log when it passes this size (e.g. 100M; default: never)",
    )
    s.add_argument(
        "--audit-keep",
        type=int,
        default=AUDIT_KEEP,
        help=f"rotated audit files kept (default {AUDIT_KEEP})",
    )
    s.add_argument(
        "--audit-key-file",
        type=Path,
        help="HMAC key for the audit hash chain: forging a chain then needs the key",
    )
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
    s.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_WAIT * 1000,
        help="under load, wait up to this long to decide Checks in batches (default "
        f"{DEFAULT_WAIT * 1000:g} ms; an idle server never waits; 0 turns batching off)",
    )
    s.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export a span per Check to this OTLP/HTTP traces endpoint "
        "(e.g. http://collector:4318/v1/traces); default: no tracing",
    )
    s.add_argument(
        "--trace-sample-ratio",
        type=float,
        default=1.0,
        help="share of the traces this guardrail starts that are recorded (default 1.0); "
        "a caller's sampling decision is followed",
    )
    s.add_argument(
        "--no-trace-inject",
        action="store_true",
        help="do not start a trace for requests without one (no traceparent sent upstream)",
    )
    s.add_argument(
        "--mask-key-file",
        type=Path,
        help="HMAC key (16+ bytes) of the 'hash' masking style, shared by replicas so hashed "
        "values stay joinable; default: a random key per process",
    )
    s.add_argument(
        "--keep-versions",
        type=int,
        default=DEFAULT_KEEP,
        help=f"policy versions kept for rollback (default {DEFAULT_KEEP})",
    )
    s.add_argument(
        "--admin",
        choices=("auto", "on", "off"),
        default="auto",
        help="the admin API on the gRPC port: auto (default) serves it on a loopback address "
        "or when --admin-token-file is given; on a non-loopback address it needs the token",
    )
    s.add_argument(
        "--admin-token-file",
        type=Path,
        help="a file holding the bearer token every admin call must present",
    )
    v = sub.add_parser("validate", help="check a policy directory or bundle; print every error")
    v.add_argument("directory", type=Path)
    v.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    e = sub.add_parser("eval", help="decide one request offline and print the decision as JSON")
    e.add_argument("--policies", type=Path, required=True)
    e.add_argument("--keys", type=Path, action="append", default=[], help=_KEYS_HELP)
    e.add_argument("--request", required=True, help="request JSON file, or - for stdin")
    e.add_argument(
        "--explain", action="store_true", help="print the decision trace before the decision"
    )
    t = sub.add_parser("demo-token", help="mint a token of the local stack's demo issuer")
    t.add_argument("--sub", required=True, help="the subject (becomes the principal)")
    t.add_argument("--scope", help="space-separated scopes (the 'scope' claim)")
    t.add_argument("--ttl", type=int, default=300, help="seconds of validity (negative: expired)")
    for module in _COMMAND_MODULES.values():
        module.add_parser(sub)
    admin_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.directory, args.keys)
    if args.command == "eval":
        return _eval(args.policies, args.request, args.keys, explain=args.explain)
    if args.command in admin_cli.COMMANDS:
        return admin_cli.run(args)
    if args.command in _COMMAND_MODULES:
        return int(_COMMAND_MODULES[args.command].run(args))
    if args.command == "demo-token":
        from guardrail_authz.demo.idp import mint  # noqa: PLC0415 - only this command needs it

        print(mint(args.sub, args.scope, args.ttl))  # noqa: T201 - the token, and only it
        return 0
    return _serve(args)


def _validate(directory: Path, keys: list[Path]) -> int:
    try:
        snap, _ = load_source(directory, keys)
    except PolicyLoadError as exc:
        print(exc.render())  # noqa: T201
        print(f"{len(exc.errors) + exc.dropped} error(s) in {directory}", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    names = ", ".join(f"{n}@{v}" for n, v in snap.policies)
    print(f"ok: {len(snap.policies)} policies ({names}), {snap.route_count} routes")  # noqa: T201
    print(f"version: {snap.version}")  # noqa: T201
    return EXIT_OK


def _eval(directory: Path, request: str, keys: list[Path], *, explain: bool = False) -> int:
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
        snap, _ = load_source(directory, keys)
    except PolicyLoadError as exc:
        print(exc.render(), file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    trace: list[str] | None = [] if explain else None
    decision = evaluate(snap, view, DecisionIds().next(), trace=trace)
    if trace is not None:
        print("\n".join(f"  {line}" for line in trace), file=sys.stderr)  # noqa: T201
    print(json.dumps(decision.to_json(), indent=2))  # noqa: T201
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _serve(args: argparse.Namespace) -> int:
    from guardrail_authz.server.app import BindError, ServeConfig, serve  # noqa: PLC0415
    from guardrail_authz.server.tracing import TraceConfig  # noqa: PLC0415

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
        keep_versions=max(1, args.keep_versions),
        admin=args.admin,
        admin_token_file=args.admin_token_file,
        batch_wait=max(0.0, args.batch_wait_ms) / 1000,
        audit_max_bytes=args.audit_max_bytes,
        audit_keep=max(1, args.audit_keep),
        audit_key_file=args.audit_key_file,
        mask_key_file=args.mask_key_file,
        tracing=TraceConfig(
            args.otlp_endpoint,
            min(1.0, max(0.0, args.trace_sample_ratio)),
            inject=not args.no_trace_inject,
        ),
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
