"""What evaluation may keep between calls: rate-limit buckets, verified tokens, the mask key."""

from __future__ import annotations

import os

from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.identity.jwt import Verifier

# The `hash` mask style's key when none is given: random, made once for this process, so that
# equal values hash alike within it (but not across replicas or restarts).
_PROCESS_MASK_KEY = os.urandom(32)


class Runtime:
    """One server process's evaluation state. Rate limits are counted by `limiter` (in this
    process), or left pending for the server to count in a shared store when `shared`, or
    not applied when neither (offline evaluation). The verifier without remote keys knows
    only policies' inline JWKS. `mask_key` is the HMAC key of the `hash` style of request
    header masking (the server gives the one its ext_proc service masks bodies with)."""

    __slots__ = ("limiter", "mask_key", "shared", "verifier")

    def __init__(
        self,
        limiter: LocalLimiter | None = None,
        verifier: Verifier | None = None,
        *,
        shared: bool = False,
        mask_key: bytes | None = None,
    ) -> None:
        self.limiter = limiter
        self.shared = shared
        self.verifier = verifier if verifier is not None else Verifier()
        self.mask_key: bytes = _PROCESS_MASK_KEY if mask_key is None else mask_key
