"""What evaluation may keep between calls: rate-limit buckets and verified tokens."""

from __future__ import annotations

from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.identity.jwt import Verifier


class Runtime:
    """One server process's evaluation state. Rate limits are counted by `limiter` (in this
    process), or left pending for the server to count in a shared store when `shared`, or
    not applied when neither (offline evaluation). The verifier without remote keys knows
    only policies' inline JWKS."""

    __slots__ = ("limiter", "shared", "verifier")

    def __init__(
        self,
        limiter: LocalLimiter | None = None,
        verifier: Verifier | None = None,
        *,
        shared: bool = False,
    ) -> None:
        self.limiter = limiter
        self.shared = shared
        self.verifier = verifier if verifier is not None else Verifier()
