"""Micro-batching of Checks: no wait when idle, batches when busy, never a lost answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from guardrail_authz.server import batch
from guardrail_authz.server.batch import Batcher

WAIT = 0.02  # long enough to tell a wait from none on a loaded machine


def _double(x: int) -> int:
    return 2 * x


def test_an_idle_server_decides_at_once() -> None:
    async def run() -> list[float]:
        b = Batcher(_double, wait=WAIT)  # CPU share of this test: far below saturation
        took = []
        for i in range(20):
            await asyncio.sleep(WAIT * 1.5)  # idle between calls
            start = time.perf_counter()
            assert await b.submit(i) == 2 * i
            took.append(time.perf_counter() - start)
        return took

    took = asyncio.run(run())
    assert max(took) < WAIT / 2, took


def test_busy_concurrent_calls_are_decided_in_batches() -> None:
    async def run() -> Batcher[int, int]:
        b = Batcher(_double, wait=WAIT, max_size=1000, cpu_share=0)  # always "saturated"
        for burst in range(5):
            results = await asyncio.gather(*(_later(b, i, 0.0005 * i) for i in range(12)))
            assert results == [2 * i for i in range(12)], burst
        return b

    b = asyncio.run(run())
    assert b.items == 60
    assert b.batches <= 15  # mostly a few large batches, not one per call


async def _later(b: Batcher[int, int], i: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return await b.submit(i)


def test_a_full_batch_is_decided_without_waiting() -> None:
    async def run() -> float:
        b = Batcher(_double, wait=10.0, max_size=8, cpu_share=0)
        b.submit(0)  # the next submit is "busy": a 10 s wait would start
        await asyncio.sleep(0)
        start = time.perf_counter()
        futures = [b.submit(i) for i in range(8)]
        assert await asyncio.gather(*futures) == [2 * i for i in range(8)]
        return time.perf_counter() - start

    assert asyncio.run(run()) < 1.0


def test_back_to_back_calls_stop_waiting_when_waits_do_not_pay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch, "PROBE_EVERY", 50)

    async def run() -> tuple[list[float], Batcher[int, int]]:
        b = Batcher(_double, wait=WAIT, cpu_share=0)
        took = []
        for i in range(200):  # one caller, each call right after the previous answer
            start = time.perf_counter()
            await b.submit(i)
            took.append(time.perf_counter() - start)
        return took, b

    took, b = asyncio.run(run())
    waited = [t for t in took if t >= WAIT * 0.9]
    # Each timed wait collects one call, so the average sinks below two after a few waits;
    # then only the occasional probe waits (one in PROBE_EVERY).
    assert 2 <= len(waited) <= 10, len(waited)
    assert b.items == 200


def test_errors_reach_their_own_caller_only() -> None:
    def fussy(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    async def run() -> list[object]:
        b = Batcher(fussy, wait=WAIT, cpu_share=0)
        return await asyncio.gather(*(b.submit(i) for i in range(6)), return_exceptions=True)

    results = asyncio.run(run())
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert results[4:] == [4, 5]


def test_a_cancelled_call_is_skipped() -> None:
    seen: list[int] = []

    def record(x: int) -> int:
        seen.append(x)
        return x

    async def run() -> None:
        b = Batcher(record, wait=WAIT, cpu_share=0)
        first = b.submit(1)
        await asyncio.sleep(0)  # the first is decided at once (nothing before it)
        assert await first == 1
        second, third = b.submit(2), b.submit(3)  # busy: these wait
        second.cancel()
        assert await third == 3

    asyncio.run(run())
    assert seen == [1, 3]
