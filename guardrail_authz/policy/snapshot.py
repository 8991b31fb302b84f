"""The compiled, immutable policy plan that requests are evaluated against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from guardrail_authz.policy.matchers import CompiledCondition, GlobSet, host_candidates
from guardrail_authz.policy.pathtrie import PathTrie


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What an API key authenticates as."""

    principal: str
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """Policy-wide settings shared by its routes."""

    name: str
    version: str
    fail_open: bool
    key_headers: tuple[str, ...]
    strip_keys: bool
    keys: Mapping[str, KeyEntry]


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
    status: int
    reason: str
    message: str | None


@dataclass(frozen=True, slots=True)
class Mutations:
    """Header and query changes applied on allow; modes are overwrite, append, if_absent."""

    set_headers: tuple[tuple[str, str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str, str], ...] = ()
    query_set: tuple[tuple[str, str], ...] = ()
    query_remove: tuple[str, ...] = ()
    propagate_identity: bool = True


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


@dataclass(slots=True)
class RouteIndex:
    """host pattern → port (0 = any) → path trie; built once, never mutated after compile."""

    hosts: dict[str, dict[int, PathTrie[CompiledRoute]]] = field(default_factory=dict)

    def trie(self, host: str, port: int) -> PathTrie[CompiledRoute]:
        """The trie for a (host pattern, port) pair, created on first use (compile time only)."""
        ports = self.hosts.setdefault(host, {})
        trie = ports.get(port)
        if trie is None:
            trie = ports[port] = PathTrie()
        return trie

    def lookup(
        self, host: str, port: int, segments: list[str], method: str
    ) -> CompiledRoute | None:
        """Most specific route: host (exact, wildcard, any) → port (exact, any) → path → method."""
        hosts = self.hosts
        for key in host_candidates(host):
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
