"""JWT verification for one provider: signature against its JWKS, then iss, aud, exp, nbf, iat.

Only asymmetric algorithms are accepted (never `none`, never HS*: a public key can never be
used as an HMAC secret). The token's `alg` must be in the provider's allow-list, and the key
its `kid` names must be of the family that algorithm needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet
from jwt import exceptions as jwt_errors

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
VERIFIED_CACHE = 10_000
VERIFIED_FOR = 60.0  # seconds a verified token is trusted without checking its signature again


class TokenError(Exception):
    """The presented token is not acceptable; `reason` is the decision's reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where a token is read from: a header (with an optional prefix such as 'Bearer ') or a
    cookie."""

    header: str | None
    prefix: str
    cookie: str | None


@dataclass(frozen=True, slots=True, eq=False)
class JwtProvider:
    """One issuer's verification settings, compiled from a policy's `jwt` block. Compared and
    hashed by identity: a reload makes new providers, whose verified tokens start afresh."""

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    leeway: float
    sources: tuple[TokenSource, ...]
    principal_claim: str
    roles_claim: str | None
    strip: bool
    keys: Mapping[str, PyJWK] | None  # inline or file JWKS (kid → key), fixed at load
    jwks_uri: str | None  # fetched at run time (or found by discovery when None and `discover`)
    discover: bool
    refresh: float  # seconds between scheduled JWKS refreshes
    remote: str = field(init=False)  # what the run-time JWKS cache is keyed by
    # Headers that carry this provider's token (removed upstream when `strip`).
    credential_headers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        remote = self.jwks_uri or (self.issuer if self.discover else "")
        object.__setattr__(self, "remote", remote)
        headers = tuple(s.header for s in self.sources if s.header is not None)
        object.__setattr__(self, "credential_headers", headers)

    def token(self, headers: Mapping[str, str]) -> str | None:
        """The first token found in the request, or None when it carries none."""
        for src in self.sources:
            if src.header is not None:
                value = headers.get(src.header)
                if value is None:
                    continue
                if src.prefix:
                    if value[: len(src.prefix)].lower() != src.prefix.lower():
                        continue
                    value = value[len(src.prefix) :]
                value = value.strip()
                if value:
                    return value
            elif src.cookie is not None:
                found = _cookie(headers.get("cookie"), src.cookie)
                if found:
                    return found
        return None


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"') or None
    return None


def key_set(data: Any) -> dict[str, PyJWK]:
    """kid → key for the usable keys of a JWKS document; raises ValueError when none are."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS must be a JSON object with a 'keys' list")  # noqa: TRY004
    try:
        keys = PyJWKSet.from_dict(data).keys
    except (jwt_errors.PyJWKSetError, jwt_errors.PyJWKError) as exc:
        raise ValueError(f"no usable key in the JWKS: {exc}") from None
    out: dict[str, PyJWK] = {}
    for key in keys:
        if key.public_key_use in (None, "sig"):
            out[key.key_id or ""] = key
    if not out:
        raise ValueError("no signing key in the JWKS")
    return out


KeyLookup = Callable[[JwtProvider, str], PyJWK | None]


class Verifier:
    """Verifies tokens; remembers verified ones (until exp, at most VERIFIED_FOR seconds, at
    most VERIFIED_CACHE of them, the oldest dropped first)."""

    def __init__(
        self, remote_keys: KeyLookup | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._remote = remote_keys
        self._clock = clock
        # A plain dict with deadlines: a hit costs a tenth of a cachetools TLRUCache lookup.
        self._verified: dict[tuple[JwtProvider, str], tuple[dict[str, Any], float]] = {}

    def verify(self, provider: JwtProvider, token: str) -> dict[str, Any]:
        """The token's claims; raises TokenError with a reason code when it is not valid."""
        cache_key = (provider, token)
        hit = self._verified.get(cache_key)
        now = self._clock()
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._verified[cache_key]
        claims = self._verify(provider, token)
        exp = claims.get("exp")
        until = now + VERIFIED_FOR
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, float(exp) + provider.leeway)
        verified = self._verified
        if len(verified) >= VERIFIED_CACHE:
            del verified[next(iter(verified))]  # the oldest entry
        verified[cache_key] = (claims, until)
        return claims

    def _verify(self, provider: JwtProvider, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.DecodeError:
            raise TokenError("token_malformed", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in provider.algorithms:
            raise TokenError("token_algorithm", "the token's algorithm is not accepted")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else ""
        key = self._key(provider, kid)
        if key is None:
            raise TokenError("token_unknown_key", "the token's signing key is not known")
        if key.key_type != _FAMILY[alg[:2]]:
            raise TokenError("token_algorithm", "the token's algorithm does not fit its key")
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(provider.audiences),
                issuer=provider.issuer,
                leeway=provider.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt_errors.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt_errors.ImmatureSignatureError:
            raise TokenError("token_not_yet_valid", "the token is not valid yet") from None
        except jwt_errors.InvalidAudienceError:
            raise TokenError("token_audience", "the token is not for this audience") from None
        except jwt_errors.InvalidIssuerError:
            raise TokenError("token_issuer", "the token is from another issuer") from None
        except jwt_errors.MissingRequiredClaimError:
            raise TokenError("token_claims", "the token lacks exp, iss or aud") from None
        except jwt_errors.InvalidSignatureError:
            raise TokenError("token_signature", "the token's signature is not valid") from None
        except jwt_errors.PyJWTError:
            raise TokenError("token_invalid", "the token is not valid") from None

    def _key(self, provider: JwtProvider, kid: str) -> PyJWK | None:
        if provider.keys is not None:
            return provider.keys.get(kid)
        if self._remote is None:
            return None
        return self._remote(provider, kid)
