"""Rate limits shared through a real redis-server: atomic buckets, replicas, outages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_authz.engine.redislimit import RedisLimiter
from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2 as ea
from tests.redisproc import RedisProcess, require_redis
from tests.serverproc import ServerProcess, check_request
from tests.test_ratelimit import limit as _limit

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(require_redis(), tmp_path).start()
    yield server
    server.stop()


def test_buckets_are_shared_by_every_limiter_on_the_redis(redis_server: RedisProcess) -> None:
    async def run() -> list[bool]:
        a, b = RedisLimiter(redis_server.url), RedisLimiter(redis_server.url)
        slow = _limit(requests=4, period=60)
        got = []
        for n in range(6):
            outcome = await (a if n % 2 else b).acquire("route", [(slow, "alice")])
            assert outcome is not None
            got.append(outcome.allowed)
        refused = await a.acquire("route", [(slow, "alice")])
        assert refused is not None
        assert (refused.limit, refused.retry_after) == ("l", 15)
        assert refused.state_header == '"l";r=0;t=60'
        other = await b.acquire("route", [(slow, "bob")])
        assert other is not None
        assert other.allowed
        await a.close()
        await b.close()
        return got

    assert asyncio.run(run()) == [True] * 4 + [False] * 2


def test_a_refusal_by_one_limit_costs_the_others_nothing(redis_server: RedisProcess) -> None:
    async def run() -> str:
        lim = RedisLimiter(redis_server.url)
        tight, loose = _limit("tight", 1, 60), _limit("loose", 3, 60)
        for _ in range(4):
            last = await lim.acquire("r", [(loose, "x"), (tight, "x")])
        await lim.close()
        assert last is not None
        return last.state_header

    assert asyncio.run(run()) == '"loose";r=2;t=20, "tight";r=0;t=60'


def test_redis_down_returns_quickly_and_recovers(redis_server: RedisProcess) -> None:
    async def run() -> None:
        lim = RedisLimiter(redis_server.url)
        five = _limit()
        assert await lim.acquire("r", [(five, "a")]) is not None
        redis_server.stop()
        start = time.monotonic()
        for _ in range(20):
            assert await lim.acquire("r", [(five, "a")]) is None
        assert time.monotonic() - start < 3  # 20 calls, each bounded by the timeout
        assert lim.errors == 20
        redis_server.start()  # same port: the pool reconnects by itself
        outcome = await lim.acquire("r", [(five, "a")])
        assert outcome is not None
        assert outcome.allowed
        await lim.close()

    asyncio.run(run())


# --- two real server processes ----------------------------------------------------------------

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: shared}
spec:
  routes:
    - name: r
      match: {paths: [/limited]}
      rules: [{name: anyone, effect: allow}]
      rateLimits:
        - {name: everyone, key: global, requests: 100, per: 10s}
"""


def _policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    (directory / "p.yaml").write_text(POLICY, encoding="utf-8")
    return directory


def _status(resp: ea.CheckResponse) -> int:
    return 200 if resp.HasField("ok_response") else resp.denied_response.status.code


def _serve(tmp_path: Path, name: str, redis_url: str, failure: str = "open") -> ServerProcess:
    return ServerProcess(
        _policies(tmp_path),
        tmp_path / f"{name}.audit",
        extra=["--redis", redis_url, "--redis-failure", failure],
    )


def test_two_replicas_enforce_one_limit_together(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with (
        _serve(tmp_path, "a", redis_server.url) as a,
        _serve(tmp_path, "b", redis_server.url) as b,
    ):
        request = check_request("GET", "/limited")
        start = time.monotonic()
        statuses = [_status((a if n % 2 else b).check(request)) for n in range(300)]
        elapsed = time.monotonic() - start
    allowed = statuses.count(200)
    expected = 100 + 10 * elapsed  # the burst, plus 10 tokens a second while the test ran
    assert abs(allowed - expected) <= 0.05 * expected, (allowed, expected, elapsed)
    assert set(statuses) == {200, 429}
    assert statuses[:100] == [200] * 100  # neither replica had a quota of its own


@pytest.mark.parametrize(("failure", "status"), [("open", 200), ("closed", 503)])
def test_redis_killed_mid_run(
    tmp_path: Path, redis_server: RedisProcess, failure: str, status: int
) -> None:
    with _serve(tmp_path, "a", redis_server.url, failure) as server:
        request = check_request("GET", "/limited")
        assert _status(server.check(request)) == 200
        redis_server.stop()
        during = [server.check(request) for _ in range(5)]
        assert [_status(r) for r in during] == [status] * 5
        if status == 503:
            body = json.loads(during[0].denied_response.body)
            assert body["reason"] == "rate_limit_unavailable"
        assert server.proc.poll() is None  # no crash
        code, metrics = server.http("/metrics")
        assert code == 200
        assert "guardrail_ratelimit_store_errors_total 5.0" in metrics
        redis_server.start()
        deadline = time.monotonic() + 5
        while _status(server.check(request)) != 200:
            assert time.monotonic() < deadline, "no recovery after Redis came back"
            time.sleep(0.05)
        assert "rate-limit store" in server.stderr()
