"""What evaluation may keep between calls: rate-limit buckets and verified tokens."""

from __future__ import annotations

from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.identity.jwt import Verifier


class Runtime:
    """One server process's evaluation state. `limiter` None: rate limits are not applied
    (offline evaluation); the verifier without remote keys knows only policies' inline JWKS."""

    __slots__ = ("limiter", "verifier")

    def __init__(self, limiter: LocalLimiter | None = None, verifier: Verifier | None = None):
        self.limiter = limiter
        self.verifier = verifier if verifier is not None else Verifier()
