"""The outcome of evaluating one request: allow or deny, with mutations and reasons."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardrail_authz.engine.ratelimit import CompiledLimit, LimitOutcome

PRINCIPAL_HEADER = "x-guardrail-principal"
ROLES_HEADER = "x-guardrail-roles"
DECISION_ID_HEADER = "x-guardrail-decision-id"
REASON_HEADER = "x-guardrail-reason"
GUARDRAIL_PREFIX = "x-guardrail-"


@dataclass(slots=True)
class PendingLimit:
    """An allowed call on a route whose limits live in a shared store: counted, then settled."""

    scope: str
    limits: list[tuple[CompiledLimit, str]]
    refuse: Callable[[LimitOutcome], Decision]  # the 429 to answer when a limit has no token
    unavailable: Callable[[], Decision]  # the 503 when the store is down and fails closed
    expose: bool


@dataclass(frozen=True, slots=True)
class WouldDeny:
    """A denial a guardrail in monitor mode found but did not enforce."""

    status: int
    reason: str
    rule: str | None  # the deny rule, or None for a route's own guardrails
    scope: str  # where the monitor mode was set: "rule", "route" or "policy"

    def to_json(self) -> dict[str, Any]:
        """As written in audit records and `eval` output."""
        return {
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "scope": self.scope,
        }


@dataclass(slots=True)
class Decision:
    """Allow/deny, status, reasons and the mutations Envoy should apply."""

    allowed: bool
    status: int
    reason: str
    decision_id: str
    policy_version: str
    policy: str | None = None
    route: str | None = None
    action: str | None = None
    principal: str | None = None
    rule: str | None = None
    message: str = ""
    body: str = ""
    reasons: list[str] = field(default_factory=list)
    upstream_headers_set: list[tuple[str, str, str]] = field(default_factory=list)
    upstream_headers_remove: list[str] = field(default_factory=list)
    response_headers_add: list[tuple[str, str, str]] = field(default_factory=list)
    query_set: list[tuple[str, str]] = field(default_factory=list)
    query_remove: list[str] = field(default_factory=list)
    deny_headers: list[tuple[str, str]] = field(default_factory=list)
    actions: tuple[str, ...] = ()  # what the payload tries to do (GraphQL, JSON-RPC, SQL, ...)
    credential: str | None = None  # what authenticated the caller: api_key, jwt, mtls
    payload_seconds: float = 0.0  # time spent on the payload guardrails (metrics)
    # Denials found by guardrails in monitor mode and not enforced (empty: fully enforced).
    monitored: list[WouldDeny] = field(default_factory=list)
    # Rate limits still to be counted in a shared store before this allow stands (see
    # engine/redislimit.py); the server settles it, nothing else sees it.
    pending: PendingLimit | None = None

    @property
    def enforced(self) -> bool:
        """False when a guardrail in monitor mode would have denied this request."""
        return not self.monitored

    def to_json(self) -> dict[str, Any]:
        """The decision as the JSON object `guardrail-authz eval` prints."""
        return {
            "allowed": self.allowed,
            "status": self.status,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "decision_id": self.decision_id,
            "policy_version": self.policy_version,
            "policy": self.policy,
            "route": self.route,
            "action": self.action,
            "principal": self.principal,
            "rule": self.rule,
            "upstream_headers_set": {n: v for n, v, _ in self.upstream_headers_set},
            "upstream_headers_modes": {n: m for n, _, m in self.upstream_headers_set},
            "upstream_headers_remove": list(self.upstream_headers_remove),
            "response_headers_add": {n: v for n, v, _ in self.response_headers_add},
            "query_parameters_set": dict(self.query_set),
            "query_parameters_remove": list(self.query_remove),
            "deny_headers": dict(self.deny_headers),
            "actions": list(self.actions),
            "credential": self.credential,
            "enforced": not self.monitored,
            "would_deny": [w.to_json() for w in self.monitored],
        }


class DecisionIds:
    """Unique decision ids: a random per-process prefix and a counter (no syscall per id)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new id, e.g. '3f2a9c0d1b4e-000000000017'."""
        return f"{self._prefix}-{next(self._counter):012x}"
