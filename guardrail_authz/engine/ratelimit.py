"""In-process token buckets: the embedded rate limiter, one per server process.

A route's limits are checked after its rules allowed the call (denied calls use no quota).
Every limit of the route must have a token for the call to go ahead; only then is one token
taken from each, so a call refused by one limit costs the others nothing.

Buckets live outside policy snapshots, keyed by policy, route, limit and key value, so a
reload keeps everyone's remaining quota. Memory is bounded: at most `max_buckets` buckets,
least recently used dropped first, and a bucket left alone until it would be full again is
dropped (it would be recreated full, so nothing is lost).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cachetools import TLRUCache

MAX_BUCKETS = 100_000
KEY_KINDS = ("principal", "sourcePrincipal", "apiKey", "clientAddress", "header", "claim", "global")


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    """One token bucket definition of a route: `requests` per `period` seconds, `burst` deep."""

    name: str
    key: str  # one of KEY_KINDS
    header: str | None  # the header (key "header") or the dotted claim (key "claim")
    requests: int
    period: float
    burst: int
    expose: bool  # also report the remaining quota on allowed calls
    rate: float = field(init=False)  # tokens per second
    refill: float = field(init=False)  # seconds from empty to full
    policy_item: str = field(init=False)  # this limit as a RateLimit-Policy list member

    def __post_init__(self) -> None:
        rate = self.requests / self.period
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "refill", self.burst / rate)
        window = f"{self.period:g}"
        object.__setattr__(self, "policy_item", f'"{self.name}";q={self.requests};w={window}')


class _Bucket:
    __slots__ = ("refill", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float, refill: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.refill = refill


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """Whether the call may go ahead, and the quota figures for the RateLimit headers."""

    allowed: bool
    limit: str  # the limit that refused the call ("" when allowed)
    retry_after: int  # whole seconds until the refusing limit has a token (0 when allowed)
    policy_header: str  # RateLimit-Policy: every limit of the route
    state_header: str  # RateLimit: remaining quota r and seconds t per limit


def _ttu(_key: tuple[str, ...], bucket: _Bucket, now: float) -> float:
    return now + bucket.refill  # by then the bucket is full again: dropping it loses nothing


class LocalLimiter:
    """Token buckets in this process's memory (the embedded default)."""

    def __init__(
        self, max_buckets: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._buckets: TLRUCache[tuple[str, ...], _Bucket] = TLRUCache(
            max_buckets, ttu=_ttu, timer=clock
        )

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, scope: str, limits: Sequence[tuple[CompiledLimit, str]]) -> LimitOutcome:
        """Take one token from each (limit, key value) bucket of `scope` (the route), or none."""
        now = self._clock()
        buckets = self._buckets
        current: list[_Bucket] = []
        refused: tuple[CompiledLimit, float] | None = None
        for limit, value in limits:
            key = (scope, limit.name, value)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(limit.burst), now, limit.refill)
            else:
                elapsed = max(0.0, now - bucket.stamp)
                bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate)
                bucket.stamp = now
            current.append(bucket)
            if bucket.tokens < 1.0 and refused is None:
                refused = (limit, (1.0 - bucket.tokens) / limit.rate)
        if refused is None:
            for bucket in current:
                bucket.tokens -= 1.0
        for (limit, value), bucket in zip(limits, current, strict=True):
            buckets[(scope, limit.name, value)] = bucket  # (re)insert: renews its expiry
        policy, state = render_headers(limits, [b.tokens for b in current])
        if refused is None:
            return LimitOutcome(True, "", 0, policy, state)
        limit, wait = refused
        return LimitOutcome(False, limit.name, max(1, math.ceil(wait)), policy, state)


def render_headers(
    limits: Sequence[tuple[CompiledLimit, str]], tokens: Sequence[float]
) -> tuple[str, str]:
    """RateLimit-Policy and RateLimit values for these limits with these tokens left."""
    policy = ", ".join(limit.policy_item for limit, _ in limits)
    state = ", ".join(
        f'"{limit.name}";r={math.floor(max(0.0, left))};'
        f"t={math.ceil(max(0.0, limit.burst - left) / limit.rate)}"
        for (limit, _), left in zip(limits, tokens, strict=True)
    )
    return policy, state
