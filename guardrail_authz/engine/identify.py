"""Who is calling: API keys, bearer tokens (JWT) and mTLS source principals."""

from __future__ import annotations

import hashlib
import time

from guardrail_authz.engine.caller import Caller
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.identity.jwt import JwtProvider, TokenError
from guardrail_authz.policy.snapshot import CompiledPolicy, KeyEntry

_NO_ROLES: frozenset[str] = frozenset()


def identify(
    policy: CompiledPolicy, view: RequestView, runtime: Runtime, caller: Caller
) -> tuple[str, str] | None:
    """Authenticate the caller into `caller` (API key first, then a JWT, else the mTLS source
    principal); the (reason, message) of a 401 when a presented credential is refused."""
    trace = caller.trace
    for header in policy.key_headers:
        key = view.headers.get(header)
        if key is None:
            continue
        entry = policy.presented.get(key)
        if entry is None:
            entry = policy.keys.get(hashlib.sha256(key.encode()).hexdigest())
            if entry is None:
                caller.credential = "api_key"
                if trace is not None:
                    trace.append(f"identity: the API key in {header} is not valid")
                return "invalid_api_key", "the API key is not valid"
            policy.presented[key] = entry
        caller.credential = "api_key"
        if entry.revoked or entry.expires is not None:
            refused = _refused_key(entry)
            if refused is not None:
                if trace is not None:
                    trace.append(f"identity: the API key in {header} is refused: {refused}")
                return refused, "the API key is not valid"
        caller.principal, caller.roles = entry.principal, entry.roles
        caller.roles_header = entry.roles_header
        caller.key = key
        if trace is not None:
            roles = caller.roles_header or "none"
            trace.append(
                f"identity: API key in {header} → principal {entry.principal!r} (roles {roles})"
            )
        break
    if caller.principal is None and policy.jwt is not None:
        bad = _bearer(policy.jwt, caller, view, runtime)
        if bad is not None:
            caller.credential = "jwt"
            if trace is not None:
                trace.append(f"identity: bearer token refused: {bad.reason}")
            return bad.reason, bad.message
        if caller.claims is not None:
            caller.credential = "jwt"
            if trace is not None:
                trace.append(f"identity: JWT → principal {caller.principal!r}")
    if caller.principal is None:
        caller.principal = caller.source
        if caller.source is not None:
            caller.credential = "mtls"
        if trace is not None:
            trace.append(
                f"identity: mTLS source principal {caller.source!r}"
                if caller.source is not None
                else "identity: none presented"
            )
    return None


def _refused_key(entry: KeyEntry) -> str | None:
    if entry.revoked:
        return "api_key_revoked"
    if entry.expires is not None and time.time() >= entry.expires:
        return "api_key_expired"
    return None


def _bearer(
    provider: JwtProvider, caller: Caller, view: RequestView, runtime: Runtime
) -> TokenError | None:
    """Authenticate the caller by the request's JWT, if it carries one; the error otherwise."""
    token = provider.token(view.headers)
    if token is None:
        return None
    try:
        claims = runtime.verifier.verify(provider, token)
    except TokenError as bad:
        return bad
    principal = claims.get(provider.principal_claim)
    if not isinstance(principal, str) or not principal:
        return TokenError("token_claims", f"the token has no {provider.principal_claim!r}")
    caller.principal = principal
    caller.claims = claims
    if provider.roles_claim is not None:
        roles = _claim_roles(claims.get(provider.roles_claim))
        caller.roles, caller.roles_header = roles, ",".join(sorted(roles))
    return None


def _claim_roles(value: object) -> frozenset[str]:
    """Roles from a claim: a list of strings, or one space- or comma-separated string."""
    if isinstance(value, str):
        return frozenset(r for r in value.replace(",", " ").split() if r)
    if isinstance(value, list):
        return frozenset(r for r in value if isinstance(r, str) and r)
    return _NO_ROLES
