"""Wires the server together: gRPC Check + health, ops HTTP, live reload, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from guardrail_authz.admin.service import AdminService
from guardrail_authz.admin.v1 import admin_pb2_grpc
from guardrail_authz.audit import AuditLog
from guardrail_authz.audit_chain import DEFAULT_KEEP as AUDIT_KEEP
from guardrail_authz.audit_chain import load_key
from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.engine.redislimit import RedisLimiter
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.identity.jwks import JwksCache
from guardrail_authz.identity.jwt import Verifier
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout.history import DEFAULT_KEEP
from guardrail_authz.server.batch import DEFAULT_WAIT
from guardrail_authz.server.extproc import ExtProcService
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.ops_http import OpsHttp
from guardrail_authz.server.reload import SnapshotHolder
from guardrail_authz.server.servicer import SERVICE, CheckService
from guardrail_authz.server.tracing import TraceConfig, Tracing

log = logging.getLogger(__name__)


class BindError(Exception):
    """A listen address could not be bound (typically: already in use)."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Options of `guardrail-authz serve`."""

    policies: Path
    grpc_addr: str = "127.0.0.1:9191"
    http_addr: str = "127.0.0.1:9192"
    audit_log: Path | None = None
    audit_max_bytes: int = 0  # rotate the audit log past this size (0: never)
    audit_keep: int = AUDIT_KEEP  # rotated audit files kept
    audit_key_file: Path | None = None  # HMAC key of the audit hash chain
    mask_key_file: Path | None = None  # HMAC key of the `hash` masking style
    reload_interval: float = 1.0
    grace_seconds: float = 10.0
    redis_url: str | None = None  # rate limits shared through this Redis, else in-process
    redis_fail_open: bool = True
    keys: tuple[Path, ...] = ()  # ApiKeySet files/directories apart from the policies
    keep_versions: int = DEFAULT_KEEP  # policy versions kept for rollback
    admin: str = "auto"  # auto (on for loopback or with a token) | on | off
    admin_token_file: Path | None = None  # bearer token the admin API requires
    batch_wait: float = DEFAULT_WAIT  # seconds a busy server waits to batch Checks (0: never)
    tracing: TraceConfig = field(default_factory=TraceConfig)  # off without an OTLP endpoint


def mask_key(path: Path | None) -> bytes:
    """The key of the `hash` masking style: from the file (16+ bytes), or random for this
    process when none is given (hashed values then differ between replicas and restarts)."""
    if path is None:
        log.warning(
            "no --mask-key-file: masking style 'hash' uses a random key of this process, so "
            "hashed values cannot be joined across replicas or restarts"
        )
        return os.urandom(32)
    return load_key(path, "mask key")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_token(config: ServeConfig) -> tuple[bool, str | None]:
    """Whether the admin API is served, and the token it requires; ValueError when the
    configuration would expose it unprotected or the token file is unusable."""
    token: str | None = None
    if config.admin_token_file is not None:
        try:
            token = config.admin_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"cannot read --admin-token-file {config.admin_token_file}: {exc.strerror}"
            raise ValueError(msg) from None
        if len(token) < 16:
            raise ValueError(f"{config.admin_token_file}: the admin token needs 16+ characters")
    if config.admin == "off":
        return False, None
    loopback = is_loopback(split_addr(config.grpc_addr)[0])
    if config.admin == "on" and not loopback and token is None:
        raise ValueError(
            f"--admin on at {config.grpc_addr} (not loopback) needs --admin-token-file"
        )
    return (loopback or token is not None), token


def split_addr(addr: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') → (host, port); raises ValueError when malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


class App:
    """One guardrail-authz process."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.holder = SnapshotHolder(
            config.policies, self.metrics, config.keys, config.keep_versions
        )
        key = load_key(config.audit_key_file) if config.audit_key_file else None
        self.audit = AuditLog(
            config.audit_log, max_bytes=config.audit_max_bytes, keep=config.audit_keep, key=key
        )
        self.audit.on_flush = lambda seconds, n: self.metrics.stage("audit", seconds, n)
        self.admin_on, token = admin_token(config)
        self.admin = AdminService(self.holder, token) if self.admin_on else None
        self.jwks = JwksCache(on_refresh=self.metrics.jwks_refreshed)
        masking = mask_key(config.mask_key_file)  # one key: header masks (ext_authz), bodies
        verifier = Verifier(self.jwks.lookup)
        self.shared: RedisLimiter | None = None
        if config.redis_url:
            self.shared = RedisLimiter(config.redis_url, fail_open=config.redis_fail_open)
            runtime = Runtime(None, verifier, shared=True, mask_key=masking)
        else:
            runtime = Runtime(LocalLimiter(), verifier, mask_key=masking)
        self.tracing = Tracing(config.tracing) if config.tracing.otlp_endpoint else None
        self.extproc = ExtProcService(self.holder, self.metrics, masking, tracing=self.tracing)
        self.service = CheckService(
            self.holder,
            self.audit,
            self.metrics,
            runtime,
            self.shared,
            config.batch_wait,
            self.tracing,
        )

        self.ops = OpsHttp(self.holder, self.metrics)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # no stub
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: asyncio.Server | None = None
        self._stop_watch = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._jwks_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load policies, bind both listeners and start watching; raises BindError."""
        self.holder.listeners.append(self._activated)
        self.holder.load("startup")
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([self.service.handler(), self.extproc.handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.admin is not None:
            admin_pb2_grpc.add_AdminServicer_to_server(self.admin, server)
        try:
            self.grpc_port = server.add_insecure_port(self.config.grpc_addr)
        except RuntimeError as exc:
            raise BindError(f"cannot listen for gRPC on {self.config.grpc_addr}: {exc}") from None
        if not self.grpc_port:
            raise BindError(f"cannot listen for gRPC on {self.config.grpc_addr}")
        host, port = split_addr(self.config.http_addr)
        try:
            self._http = await asyncio.start_server(self.ops.handle, host, port)
        except OSError as exc:
            msg = f"cannot listen for ops HTTP on {self.config.http_addr}: {exc.strerror}"
            raise BindError(msg) from None
        self.http_port = self._http.sockets[0].getsockname()[1]
        await server.start()
        self._grpc = server
        await self._sync_health()
        self._watch_task = asyncio.create_task(self._watch())
        self._jwks_task = asyncio.create_task(self.jwks.run(self._stop_watch))
        # Startup objects (snapshot, modules, grpc) never die: keep them out of every GC pass.
        gc.collect()
        gc.freeze()
        log.info(
            "listening grpc=%s http=%s admin=%s",
            self.grpc_port,
            self.http_port,
            "on" if self.admin is not None else "off",
        )

    async def _sync_health(self) -> None:
        serving = self.holder.snapshot is not None and not self.ops.draining
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        await self.health.set(SERVICE, status)

    async def _watch(self) -> None:
        interval = self.config.reload_interval
        stop = self._stop_watch
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set() or not self.holder.changed():
                continue
            await asyncio.sleep(min(0.2, interval))  # let a multi-file write settle
            await asyncio.to_thread(self.holder.load)
            await self._sync_health()

    def _activated(self, snapshot: PolicySnapshot) -> None:
        """A version became active (load, rollback, resume): fetch its JWKS, redact its
        credential headers in the audit trail."""
        self.jwks.track(snapshot.jwt_providers)
        self.audit.set_secret_headers(snapshot.api_key_headers, snapshot.secret_headers)

    async def stop(self) -> None:
        """Drain: report not ready, let in-flight checks finish, then close everything."""
        self.ops.draining = True
        with contextlib.suppress(Exception):
            await self._sync_health()
        if self._grpc is not None:
            await self._grpc.stop(self.config.grace_seconds)
        self._stop_watch.set()
        if self._watch_task is not None:
            await self._watch_task
        if self._jwks_task is not None:
            self._jwks_task.cancel()  # a fetch in flight finishes in its thread (<= 5 s)
            with contextlib.suppress(asyncio.CancelledError):
                await self._jwks_task
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()
        if self.shared is not None:
            with contextlib.suppress(Exception):
                await self.shared.close()
        self.audit.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)


async def serve(config: ServeConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    app = App(config)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.audit.reopen)  # after logrotate moved the file
    print(  # noqa: T201 - the one line an operator (and `make run`) reads
        f"guardrail-authz ready: grpc={config.grpc_addr.rpartition(':')[0]}:{app.grpc_port} "
        f"http={config.http_addr.rpartition(':')[0]}:{app.http_port} "
        f"policy={app.holder.snapshot.version if app.holder.snapshot else 'none (not ready)'}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    log.info("shutting down: draining in-flight checks")
    await app.stop()
