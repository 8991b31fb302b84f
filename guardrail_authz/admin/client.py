"""`guardrail-authz status | versions | rollback | resume`: the admin API from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from guardrail_authz.admin.v1 import admin_pb2 as pb
from guardrail_authz.admin.v1 import admin_pb2_grpc

TOKEN_ENV = "GUARDRAIL_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
COMMANDS = ("status", "versions", "rollback", "resume")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the admin commands on the `guardrail-authz` parser."""
    helps = {
        "status": "the server's active policy version, its source and any rollback",
        "versions": "the policy versions the server keeps, newest first",
        "rollback": "activate a kept version now and hold it until `resume`",
        "resume": "lift a rollback: load the policy source now and track it again",
    }
    for name in COMMANDS:
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("--server", default="127.0.0.1:9191", help="gRPC HOST:PORT of the server")
        p.add_argument(
            "--token-file", type=Path, help=f"admin token file (default: ${TOKEN_ENV} if set)"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
        if name == "rollback":
            p.add_argument("--to", default="", help="version, content hash or hash prefix")
            p.add_argument("--reason", default="", help="why (kept with the rollback)")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    """Call the server and print the answer; exit 1 when the call fails."""
    try:
        token = _token(args)
    except OSError as exc:
        print(f"error: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(args.server) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        try:
            message, text = _CALLS[args.command](stub, args, metadata)
        except grpc.RpcError as exc:
            print(f"error: {_explain(exc, args.server)}", file=sys.stderr)  # noqa: T201
            return EXIT_ERROR
    if args.json:
        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))  # noqa: T201
    else:
        print(text)  # noqa: T201
    return EXIT_OK


def _explain(exc: grpc.RpcError, server: str) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"no guardrail-authz answers at {server} ({detail})"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"{server} does not serve the admin API (off by default on non-loopback addresses; "
            "start the server with --admin-token-file, or --admin on at a loopback address)"
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{detail} (--token-file or ${TOKEN_ENV})"
    return f"{detail} ({code.name if code else 'error'})"


Meta = tuple[tuple[str, str], ...]
Call = Callable[[admin_pb2_grpc.AdminStub, argparse.Namespace, Meta], tuple[Any, str]]


def _when(t: float) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _status(stub: admin_pb2_grpc.AdminStub, args: argparse.Namespace, md: Meta) -> tuple[Any, str]:
    s = stub.GetStatus(pb.GetStatusRequest(), timeout=args.timeout, metadata=md)
    lines = [
        f"active:   {s.active.version or 'none'}" + ("" if s.ready else " (not ready)"),
        f"          since {_when(s.active.activated_at)}, {s.active.trigger}",
        f"source:   {s.source} ({s.source_kind})",
    ]
    if s.pinned:
        lines.append(f"pinned:   yes, {s.pinned_by} at {_when(s.pinned_at)}")
        latest = s.source_latest.version
        if latest and latest != s.active.version:
            lines.append(f"          the source has {latest}, not applied")
        lines.append("          `guardrail-authz resume` tracks the source again")
    else:
        lines.append("pinned:   no (tracking the source)")
    if s.last_failure:
        lines.append(f"rejected: the source's newest change, at {_when(s.last_failure_at)}:")
        lines.extend(f"          {e}" for e in s.last_failure)
    lines.append(f"kept:     {s.kept} of {s.keep} versions")
    return s, "\n".join(lines)


def _versions(
    stub: admin_pb2_grpc.AdminStub, args: argparse.Namespace, md: Meta
) -> tuple[Any, str]:
    r = stub.ListVersions(pb.ListVersionsRequest(), timeout=args.timeout, metadata=md)
    lines = []
    for v in r.versions:
        mark = "*" if v.active else " "
        bundle = f" bundle {v.bundle}" if v.bundle else ""
        lines.append(
            f"{mark} {v.version}  loaded {_when(v.loaded_at)}  {v.route_count} routes  "
            f"{v.trigger}{bundle}"
        )
    lines.append("(* active)")
    return r, "\n".join(lines)


def _rollback(
    stub: admin_pb2_grpc.AdminStub, args: argparse.Namespace, md: Meta
) -> tuple[Any, str]:
    req = pb.RollbackRequest(to=args.to, reason=args.reason)
    r = stub.Rollback(req, timeout=args.timeout, metadata=md)
    text = (
        f"rolled back to {r.active.version} (was {r.previous})\n"
        "pinned: changes of the policy source are not applied until `guardrail-authz resume`"
    )
    return r, text


def _resume(stub: admin_pb2_grpc.AdminStub, args: argparse.Namespace, md: Meta) -> tuple[Any, str]:
    r = stub.Resume(pb.ResumeRequest(), timeout=args.timeout, metadata=md)
    what = "now active" if r.changed else "active (unchanged)"
    return r, f"tracking the policy source again: {r.active.version} {what}"


_CALLS: dict[str, Call] = {
    "status": _status,
    "versions": _versions,
    "rollback": _rollback,
    "resume": _resume,
}
