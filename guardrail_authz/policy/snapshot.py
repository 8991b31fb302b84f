"""The compiled, immutable policy plan that requests are evaluated against."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guardrail_authz.engine.ratelimit import CompiledLimit
from guardrail_authz.identity.jwt import JwtProvider
from guardrail_authz.payload.mask import MaskPlan
from guardrail_authz.payload.plan import PayloadPlan
from guardrail_authz.policy.matchers import (
    ClaimCondition,
    CompiledCondition,
    GlobSet,
    host_candidates,
)
from guardrail_authz.policy.pathtrie import PathTrie


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What an API key authenticates as."""

    principal: str
    roles: frozenset[str]
    expires: float | None = None  # Unix time after which the key is refused
    revoked: bool = False
    roles_header: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles_header", ",".join(sorted(self.roles)))


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """Policy-wide settings shared by its routes."""

    name: str
    version: str
    fail_open: bool
    key_headers: tuple[str, ...]
    strip_keys: bool
    keys: Mapping[str, KeyEntry]  # sha256 hex digest of the key -> who presents it
    # Keys already presented and found valid, so a caller's repeated calls skip hashing.
    # Only valid keys enter it: its size is bounded by `keys`, whatever callers send.
    presented: dict[str, KeyEntry] = field(default_factory=dict, compare=False, repr=False)
    jwt: JwtProvider | None = None
    xfcc_trusted: GlobSet | None = None  # peers whose x-forwarded-client-cert is believed


@dataclass(frozen=True, slots=True)
class Rollout:
    """Monitor mode: denials are recorded, not enforced, except for the `percent` share of
    principals (stable: a principal's bucket depends only on it and the policy's name, so a
    caller enforced at 10% stays enforced at 20%)."""

    percent: float  # 0 <= percent < 100
    salt: str  # the policy's name: each policy picks its own cohort
    scope: str  # where monitor mode was set: "policy", "route" or "rule"

    def enforced_for(self, principal: str | None) -> bool:
        """True when this caller is in the enforced share (callers without a principal
        share one bucket)."""
        if self.percent <= 0:
            return False
        digest = hashlib.sha256(f"{self.salt}\0{principal or ''}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 10000 < self.percent * 100


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An allow or deny rule with every matcher prebuilt."""

    name: str
    allow: bool
    principals: GlobSet
    source_principals: GlobSet
    roles: frozenset[str]
    authenticated: bool | None
    headers: tuple[CompiledCondition, ...]
    query: tuple[CompiledCondition, ...]
    claims: tuple[ClaimCondition, ...]
    status: int
    reason: str
    message: str | None
    # Globs over the request's actions: an allow rule needs every action to match one,
    # a deny rule any action (None: the rule does not look at actions).
    actions: GlobSet | None = None
    monitor: Rollout | None = None  # a deny rule in monitor mode (None: enforced)
    allow_reason: str = field(init=False)
    has_principals: bool = field(init=False)
    has_sources: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_reason", f"allowed_by_rule:{self.name}")
        object.__setattr__(self, "has_principals", bool(self.principals))
        object.__setattr__(self, "has_sources", bool(self.source_principals))


@dataclass(frozen=True, slots=True)
class Mutations:
    """Header and query changes applied on allow; modes are overwrite, append, if_absent."""

    set_headers: tuple[tuple[str, str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str, str], ...] = ()
    query_set: tuple[tuple[str, str], ...] = ()
    query_remove: tuple[str, ...] = ()
    propagate_identity: bool = True
    claim_headers: tuple[tuple[tuple[str, ...], str], ...] = ()  # (claim path, header)
    # Derived once: overwrite-mode sets need no look at the request; the rest do.
    static_sets: tuple[tuple[str, str, str], ...] = field(init=False)
    dynamic_sets: tuple[tuple[str, str, str], ...] = field(init=False)
    set_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        static = tuple(h for h in self.set_headers if h[2] == "overwrite")
        object.__setattr__(self, "static_sets", static)
        object.__setattr__(
            self, "dynamic_sets", tuple(h for h in self.set_headers if h[2] != "overwrite")
        )
        names = {h[0] for h in self.set_headers} | {h for _, h in self.claim_headers}
        object.__setattr__(self, "set_names", frozenset(names))


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route ready for evaluation."""

    id: str
    name: str
    action: str
    policy: CompiledPolicy
    deny_rules: tuple[CompiledRule, ...]
    allow_rules: tuple[CompiledRule, ...]
    identity_required: bool
    uses_identity: bool
    mutations: Mutations
    rate_limits: tuple[CompiledLimit, ...] = ()
    payload: PayloadPlan | None = None  # body, schema, detector and action checks
    monitor: Rollout | None = None  # the route's own guardrails in monitor mode
    mask: MaskPlan | None = None  # what ext_proc masks in this route's bodies


@dataclass(slots=True)
class RouteIndex:
    """host pattern → port (0 = any) → path trie; built once, never mutated after compile."""

    hosts: dict[str, dict[int, PathTrie[CompiledRoute]]] = field(default_factory=dict)
    wildcards: bool = False  # any '*.suffix' host pattern: only then are suffixes tried

    def trie(self, host: str, port: int) -> PathTrie[CompiledRoute]:
        """The trie for a (host pattern, port) pair, created on first use (compile time only)."""
        ports = self.hosts.setdefault(host, {})
        self.wildcards = self.wildcards or host.startswith("*.")
        trie = ports.get(port)
        if trie is None:
            trie = ports[port] = PathTrie()
        return trie

    def lookup(
        self, host: str, port: int, segments: list[str], method: str
    ) -> CompiledRoute | None:
        """Most specific route: host (exact, wildcard, any) → port (exact, any) → path → method."""
        hosts = self.hosts
        keys = host_candidates(host) if self.wildcards else (host, "*")
        for key in keys:
            ports = hosts.get(key)
            if ports is None:
                continue
            for p in (port, 0) if port else (0,):
                trie = ports.get(p)
                if trie is not None:
                    found = trie.lookup(segments, method)
                    if found is not None:
                        return found
        return None


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Everything evaluation needs, immutable; swapped whole on reload."""

    version: str
    content_hash: str
    policies: tuple[tuple[str, str], ...]
    index: RouteIndex
    route_count: int
    files: tuple[str, ...]
    stage_seconds: Mapping[str, float]
    jwt_providers: tuple[JwtProvider, ...] = ()  # whose remote JWKS the server fetches
    watched: tuple[Path, ...] = ()  # files outside the directory listing (JWKS files)
    compiled_policies: tuple[CompiledPolicy, ...] = ()  # one per GuardrailPolicy, by name
    # Request headers that carry credentials under some policy (API key headers, JWT headers,
    # cookies): the audit trail records them hashed or redacted, never in clear.
    api_key_headers: frozenset[str] = frozenset()
    secret_headers: frozenset[str] = frozenset()
