"""Frozen source model: what the policy files say, validated but not yet compiled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from guardrail_authz.policy.source_mask import MaskSpec


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
    actions: tuple[str, ...] = ()  # globs over the actions found in the payload

    def needs_identity(self) -> bool:
        """True when only an authenticated caller could satisfy this rule."""
        return bool(self.principals or self.source_principals or self.roles or self.claims) or (
            self.authenticated is True
        )


@dataclass(frozen=True, slots=True)
class ModeSpec:
    """`mode` and `enforce` of a policy, route or deny rule: enforce, or monitor with a share
    of callers (by principal) already enforced."""

    monitor: bool
    enforce_percent: float  # 100 when mode is enforce; 0..100 for monitor
    where: Where


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
    mode: ModeSpec | None = None  # None: the route's


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
class BodySpec:
    """How a route's buffered request body is accepted and parsed."""

    content_types: tuple[str, ...]  # allowed media types ("type/*" allowed); () = any
    max_bytes: int
    max_depth: int
    max_elements: int
    partial: str  # "deny" | "inspect": what to do when Envoy sent only part of the body
    where: Where


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    """JSON Schemas (draft 2020-12) for the body, the query parameters and selected headers."""

    body: Mapping[str, Any] | None
    query: Mapping[str, Any] | None
    headers: Mapping[str, Any] | None
    strict: bool  # objects that list properties accept no others
    where: Where
    body_optional: bool = False  # an empty body passes (OpenAPI requestBody.required: false)
    path: Mapping[str, Any] | None = None  # the path template's {parameters}, as an object


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Detector overrides for the fields whose path matches a glob."""

    path: str
    skip: tuple[str, ...]
    monitor: tuple[str, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class InspectSpec:
    """Which injection detectors run on a route, in which mode, over which parts."""

    detectors: tuple[str, ...]
    monitor: tuple[str, ...]  # detectors that only record what they find
    headers: tuple[str, ...]  # header values inspected besides body, query and path
    path: bool
    query: bool
    fields: tuple[FieldRule, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class ActionsSpec:
    """Where a route finds the actions inside a request (GraphQL, JSON-RPC, gRPC, SQL)."""

    kind: str  # graphql | jsonrpc | grpc | sql
    field: str | None  # sql: the dotted body field holding the statement
    dialect: str | None
    max_depth: int
    max_aliases: int
    max_fields: int
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
    body: BodySpec | None = None
    schema: SchemaSpec | None = None
    inspect: InspectSpec | None = None  # None: the policy's default
    actions: ActionsSpec | None = None
    mode: ModeSpec | None = None  # None: the policy's
    mask: MaskSpec | None = None  # masking of bodies (ext_proc)


@dataclass(frozen=True, slots=True)
class OpenApiSpec:
    """Routes imported from an OpenAPI 3 document next to the policy files."""

    file: str
    strict: bool
    rules: tuple[Rule, ...]
    body: BodySpec | None
    where: Where


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
    inspect: InspectSpec | None = None  # detectors for routes that do not set their own
    openapi: OpenApiSpec | None = None
    mode: ModeSpec | None = None  # None: enforce


@dataclass(frozen=True, slots=True)
class ApiKeySet:
    """An ApiKeySet document: keys shared by the policies that reference it."""

    name: str
    keys: tuple[ApiKey, ...]
    where: Where
