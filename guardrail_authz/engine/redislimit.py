"""Rate limits shared by every replica: the same token buckets, kept in Redis.

One round trip per limited call: a server-side Lua script refills and takes from every
bucket of the route atomically, timed by Redis's own clock (replicas' clocks never matter).
The client is redis-py's pooled asyncio client; a lost connection is re-opened by the next
call. When Redis cannot answer within `timeout` the call is settled by the failure mode:
`open` lets it through (counted in guardrail_ratelimit_store_errors_total and logged at most
every 10 s), `closed` refuses it with 503 `rate_limit_unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from guardrail_authz.engine.ratelimit import CompiledLimit, LimitOutcome, render_headers

log = logging.getLogger(__name__)
KEY_PREFIX = "guardrail:rl:"
DEFAULT_TIMEOUT = 0.05
LOG_EVERY = 10.0

# KEYS: one hash per bucket. ARGV: per bucket, rate (tokens per ms) and burst.
# Returns: index (1-based) of the first bucket without a token (0: allowed), the ms until it
# has one, then every bucket's tokens after the call.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
local refused, wait = 0, 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i], 'tokens', 'stamp')
  local have, stamp = tonumber(h[1]), tonumber(h[2])
  if have == nil or stamp == nil then have, stamp = burst, now end
  have = math.min(burst, have + math.max(0, now - stamp) * rate)
  tokens[i] = have
  if have < 1 and refused == 0 then refused, wait = i, (1 - have) / rate end
end
local out = {refused, tostring(wait)}
for i = 1, #KEYS do
  local have = tokens[i]
  if refused == 0 then have = have - 1 end
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 'tokens', tostring(have), 'stamp', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil((burst - have) / rate) + 1000)
  out[#out + 1] = tostring(have)
end
return out
"""


class RedisLimiter:
    """Token buckets in Redis, shared by every replica that uses the same Redis."""

    def __init__(
        self, url: str, *, fail_open: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url
        self.fail_open = fail_open
        self.errors = 0  # calls settled by the failure mode (for metrics)
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=64,
            decode_responses=True,
        )
        self._script = self._client.register_script(_SCRIPT)
        self._timeout = timeout
        self._logged = -math.inf

    async def acquire(
        self, scope: str, limits: Sequence[tuple[CompiledLimit, str]]
    ) -> LimitOutcome | None:
        """The outcome, or None when Redis could not answer (the caller applies fail_open)."""
        keys = [f"{KEY_PREFIX}{scope}\x1f{limit.name}\x1f{value}" for limit, value in limits]
        args: list[float] = []
        for limit, _ in limits:
            args += [limit.rate / 1000.0, float(limit.burst)]
        try:
            async with asyncio.timeout(self._timeout * 2):
                reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        refused, wait_ms = int(reply[0]), float(reply[1])
        tokens = [float(x) for x in reply[2:]]
        policy, state = render_headers(limits, tokens)
        if refused == 0:
            return LimitOutcome(True, "", 0, policy, state)
        limit = limits[refused - 1][0]
        return LimitOutcome(False, limit.name, max(1, math.ceil(wait_ms / 1000)), policy, state)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            mode = "letting limited calls through" if self.fail_open else "refusing them"
            log.warning("rate-limit store %s unavailable (%r); %s", self.url, exc, mode)

    async def close(self) -> None:
        """Close the pool's connections."""
        await self._client.aclose()
