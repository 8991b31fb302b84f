"""Frozen source model: what the policy files say, validated but not yet compiled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MatchOp(Enum):
    """How a header or query condition compares a value."""

    EQUALS = "equals"
    PREFIX = "prefix"
    REGEX = "regex"
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class Where:
    """Location of a source element, for error messages."""

    file: str
    line: int
    field: str


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition on one header or query parameter."""

    name: str
    op: MatchOp
    value: str
    where: Where


@dataclass(frozen=True, slots=True)
class ClaimCheck:
    """A condition on a JWT claim (dotted name for nested claims)."""

    name: str
    op: str
    value: str | float
    where: Where


@dataclass(frozen=True, slots=True)
class When:
    """The conditions of a rule; all given fields must hold (lists inside a field are any-of)."""

    principals: tuple[str, ...] = ()
    source_principals: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    authenticated: bool | None = None
    headers: tuple[Condition, ...] = ()
    query: tuple[Condition, ...] = ()
    claims: tuple[ClaimCheck, ...] = ()

    def needs_identity(self) -> bool:
        """True when only an authenticated caller could satisfy this rule."""
        return bool(self.principals or self.source_principals or self.roles or self.claims) or (
            self.authenticated is True
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """An allow or deny rule of a route."""

    name: str
    effect: str  # "allow" | "deny"
    when: When
    status: int | None
    reason: str | None
    message: str | None
    where: Where


@dataclass(frozen=True, slots=True)
class HeaderSet:
    """A header to set; `append` is one of overwrite, append, if_absent."""

    name: str
    value: str
    mode: str
    where: Where


@dataclass(frozen=True, slots=True)
class OnAllow:
    """Mutations applied when a route allows a request."""

    set_headers: tuple[HeaderSet, ...] = ()
    remove_headers: tuple[str, ...] = ()
    response_headers: tuple[HeaderSet, ...] = ()
    query_set: tuple[tuple[str, str], ...] = ()
    query_remove: tuple[str, ...] = ()
    propagate_identity: bool = True
    claim_headers: tuple[tuple[str, str], ...] = ()  # (claim name, upstream header)


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a route covers."""

    hosts: tuple[str, ...] | None
    ports: tuple[int, ...] | None
    methods: tuple[str, ...]
    paths: tuple[str, ...]
    prefixes: tuple[str, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket on a route: `requests` per `period` seconds per key value."""

    name: str
    key: str  # principal | sourcePrincipal | apiKey | global | header
    header: str | None  # for key 'header:<name>'
    requests: int
    period: float
    burst: int
    expose: bool
    where: Where


@dataclass(frozen=True, slots=True)
class Route:
    """A named route with its action, rules, mutations and rate limits."""

    name: str
    action: str
    match: Match
    rules: tuple[Rule, ...]
    on_allow: OnAllow
    where: Where
    rate_limits: tuple[RateLimit, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key known only by its SHA-256 hash."""

    sha256: str
    principal: str
    roles: tuple[str, ...]
    where: Where
    expires: float | None = None  # Unix time after which the key is refused
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    """Where a policy reads API keys from and which keys it trusts."""

    headers: tuple[str, ...]
    strip: bool
    keys: tuple[ApiKey, ...]
    sets: tuple[tuple[str, Where], ...]


@dataclass(frozen=True, slots=True)
class TokenFrom:
    """Where a JWT is read: a header with an optional prefix, or a cookie."""

    header: str | None
    prefix: str
    cookie: str | None


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """A policy's JWT provider: issuer, audiences, algorithms and where its keys come from."""

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    leeway: float
    jwks_uri: str | None
    discovery: bool
    inline_keys: tuple[object, ...] | None  # JWK objects as written in the policy
    refresh: float
    sources: tuple[TokenFrom, ...]
    principal_claim: str
    roles_claim: str | None
    strip: bool
    where: Where
    keys_where: Where
    jwks_file: str | None = None  # a JWKS JSON file, relative to the policy directory


@dataclass(frozen=True, slots=True)
class Policy:
    """A GuardrailPolicy document."""

    name: str
    version: str
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    fail_mode: str  # "closed" | "open"
    api_keys: ApiKeyConfig
    routes: tuple[Route, ...]
    where: Where
    jwt: JwtConfig | None = None
    xfcc_trusted: tuple[str, ...] = ()  # peers whose x-forwarded-client-cert is believed


@dataclass(frozen=True, slots=True)
class ApiKeySet:
    """An ApiKeySet document: keys shared by the policies that reference it."""

    name: str
    keys: tuple[ApiKey, ...]
    where: Where
