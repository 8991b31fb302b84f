"""Micro-batching of Checks under load: requests that arrive close together are decided in
one go, after a short wait that lets gRPC deliver the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from guardrail_authz.cpuload import SATURATED, CpuLoad

T = TypeVar("T")
R = TypeVar("R")

# Seconds a busy server waits to fill a batch. 2 ms rather than 1: through Envoy at saturation
# (one connection carrying the Checks) it raised req/s by 4-10% and cut the server's CPU per
# Check by 2-17% (three runs of 8-12 alternating rounds, docs/benchmarks.md section 4); at a
# fixed moderate rate the server is not CPU-bound and never waits.
DEFAULT_WAIT = 0.002
DEFAULT_MAX = 32  # a batch this large is decided at once
PROBE_EVERY = 256  # while waits do not pay, try one anyway this often


class Batcher(Generic[T, R]):
    """Queues items and hands them to `process` in batches.

    Idle (the process used less than SATURATED of a CPU lately, cpuload.py, or the
    previous item arrived more than `wait` ago): an item is processed at the end of the
    current event-loop turn, adding no latency. Busy (CPU-bound: calls queue up anyway): the
    first item of a batch waits up to `wait` seconds, or until `max_size` items are queued,
    as long as waiting pays:
    when recent waits collected fewer than two items on average (one client calling
    back-to-back, say), items are processed at once again, and only one in PROBE_EVERY
    waits, to notice when concurrency returns. The wait matters because
    gRPC's completion-queue poller runs in its own thread: while the event loop sleeps in
    select(), that thread gets the interpreter lock and delivers the next calls, instead of
    one call per loop turn. Deciding a batch in one loop, then sending its answers together,
    keeps both our code and gRPC's warm in the CPU caches (docs/benchmarks.md).
    """

    def __init__(
        self,
        process: Callable[[T], R],
        wait: float = DEFAULT_WAIT,
        max_size: int = DEFAULT_MAX,
        cpu_share: float = SATURATED,
    ) -> None:
        self._process = process
        self._wait = wait
        self._max = max_size
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._load = CpuLoad(cpu_share)
        self._gain = 2.0  # moving average of the items a timed wait collected
        self._probe = PROBE_EVERY
        self._timed = False
        self.batches = 0  # how many batches were processed (tests, diagnostics)
        self.items = 0

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue one item; the future gets `process(item)` (or its exception)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        queue = self._queue
        queue.append((item, fut))
        now = time.perf_counter()
        busy, self._last = now - self._last < self._wait, now
        saturated = self._load.busy(now)
        if len(queue) == 1:
            if busy and saturated and self._pays():
                self._timed = True
                self._timer = loop.call_later(self._wait, self.drain)
            else:
                self._timed = False
                loop.call_soon(self.drain)
        elif len(queue) >= self._max:
            self.drain()
        return fut

    def _pays(self) -> bool:
        """Whether to wait for more items: recent waits collected two or more on average."""
        if self._gain >= 2:
            return True
        self._probe -= 1
        if self._probe > 0:
            return False
        self._probe = PROBE_EVERY
        return True

    def drain(self) -> None:
        """Process everything queued now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        if self._timed:
            self._gain = 0.8 * self._gain + 0.2 * len(queue)
        self.batches += 1
        self.items += len(queue)
        process = self._process
        for item, fut in queue:
            if fut.done():  # the call was cancelled meanwhile
                continue
            try:
                fut.set_result(process(item))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting call
                fut.set_exception(exc)
