"""The admin gRPC service: status, versions, rollback, resume, evaluate and validate."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

import grpc

from guardrail_authz.admin.v1 import admin_pb2 as pb
from guardrail_authz.admin.v1 import admin_pb2_grpc
from guardrail_authz.engine.decision import DecisionIds
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout.bundle import bundle_from_bytes
from guardrail_authz.rollout.history import UnknownVersionError, VersionEntry
from guardrail_authz.server.reload import SnapshotHolder

log = logging.getLogger(__name__)
SERVICE = "guardrail.admin.v1.Admin"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
Context = grpc.aio.ServicerContext[Any, Any]


def version_message(entry: VersionEntry) -> pb.Version:
    """A kept version as its wire message."""
    snap = entry.snapshot
    return pb.Version(
        version=snap.version,
        content_hash=snap.content_hash,
        loaded_at=entry.loaded_at,
        activated_at=entry.activated_at,
        active=entry.active,
        source=entry.source,
        trigger=entry.trigger,
        files=list(snap.files),
        policies=[f"{n}@{v}" for n, v in snap.policies],
        route_count=snap.route_count,
        bundle=entry.bundle,
    )


def _maybe(entry: VersionEntry | None) -> pb.Version | None:
    return None if entry is None else version_message(entry)


def _errors(exc: PolicyLoadError) -> list[pb.PolicyError]:
    return [
        pb.PolicyError(file=e.file, line=e.line, field=e.field, code=e.code, message=e.message)
        for e in exc.errors
    ]


class AdminService(admin_pb2_grpc.AdminServicer):
    """Serves guardrail.admin.v1.Admin; every call checks the bearer token when one is set."""

    def __init__(self, holder: SnapshotHolder, token: str | None = None) -> None:
        self.holder = holder
        self.token = token
        self.started_at = time.time()
        self.ids = DecisionIds()

    async def _authorize(self, context: Context) -> str:
        """Who is calling (for the records); aborts UNAUTHENTICATED on a wrong or no token."""
        peer = context.peer() or "unknown peer"
        if self.token is None:
            return peer
        metadata = dict(context.invocation_metadata() or ())
        presented = str(metadata.get("authorization", ""))
        expected = f"Bearer {self.token}"
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            log.warning("admin call refused: no valid token (peer %s)", peer)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid admin token is needed")
        return peer

    async def GetStatus(self, request: pb.GetStatusRequest, context: Context) -> pb.Status:  # noqa: N802
        """What is active, its source, whether a rollback pins it, the last failure."""
        await self._authorize(context)
        h = self.holder
        pin, failure = h.pin, h.last_failure
        return pb.Status(
            active=_maybe(h.history.active),
            ready=h.snapshot is not None,
            pinned=pin is not None,
            pinned_by=pin.by if pin else "",
            pinned_at=pin.at if pin else 0.0,
            source=str(h.directory),
            source_kind=h.source_kind,
            source_latest=_maybe(h.source_latest),
            last_failure_at=failure.at if failure else 0.0,
            last_failure=list(failure.errors) if failure else [],
            kept=len(h.history.entries),
            keep=h.history.keep,
            started_at=self.started_at,
        )

    async def ListVersions(  # noqa: N802
        self, request: pb.ListVersionsRequest, context: Context
    ) -> pb.ListVersionsResponse:
        """The kept versions, newest first."""
        await self._authorize(context)
        entries = self.holder.history.newest_first()
        return pb.ListVersionsResponse(versions=[version_message(e) for e in entries])

    async def Rollback(self, request: pb.RollbackRequest, context: Context) -> pb.RollbackResponse:  # noqa: N802
        """Activate and pin a kept version."""
        peer = await self._authorize(context)
        by = f"rollback by {peer}" + (f": {request.reason}" if request.reason else "")
        try:
            entry, replaced = self.holder.rollback(request.to, by)
        except UnknownVersionError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.RollbackResponse(active=version_message(entry), previous=replaced)

    async def Resume(self, request: pb.ResumeRequest, context: Context) -> pb.ResumeResponse:  # noqa: N802
        """Lift a rollback: load the source now and track it again."""
        peer = await self._authorize(context)
        try:
            entry, changed = await asyncio.to_thread(self.holder.resume, f"resume by {peer}")
        except PolicyLoadError as exc:
            detail = "; ".join(str(e) for e in exc.errors[:5])
            msg = f"the policy source does not load, still pinned: {detail}"
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, msg)
        return pb.ResumeResponse(active=_maybe(entry), changed=changed)

    async def Evaluate(self, request: pb.EvaluateRequest, context: Context) -> pb.EvaluateResponse:  # noqa: N802
        """Decide one request against the active or a kept version, with its trace."""
        await self._authorize(context)
        snapshot: PolicySnapshot | None = self.holder.snapshot
        if request.version:
            try:
                snapshot = self.holder.history.find(request.version).snapshot
            except UnknownVersionError as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if snapshot is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no policy is loaded")
        r = request.request
        view = RequestView(
            method=r.method or "GET",
            raw_path=r.path or "/",
            host=r.host or r.headers.get(":authority", "") or r.headers.get("host", ""),
            headers={k.lower(): v for k, v in r.headers.items()},
            port=r.destination_port,
            source_principal=r.source_principal,
            body=r.body,
            source_address=r.source_address,
        )
        trace: list[str] = []
        d = evaluate(snapshot, view, self.ids.next(), trace=trace)
        return pb.EvaluateResponse(
            allowed=d.allowed,
            status=d.status,
            reason=d.reason,
            version=snapshot.version,
            decision_json=json.dumps(d.to_json()),
            trace=trace,
        )

    async def Validate(self, request: pb.ValidateRequest, context: Context) -> pb.ValidateResponse:  # noqa: N802
        """Compile a candidate bundle without activating it."""
        await self._authorize(context)
        if len(request.bundle) > MAX_BUNDLE_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the bundle is over 64 MiB")
        try:
            snap, info = await asyncio.to_thread(bundle_from_bytes, request.bundle)
        except PolicyLoadError as exc:
            return pb.ValidateResponse(ok=False, errors=_errors(exc))
        return pb.ValidateResponse(
            ok=True,
            version=snap.version,
            route_count=snap.route_count,
            policies=[f"{n}@{v}" for n, v in snap.policies],
            bundle=f"{info.name}@{info.version}",
        )
