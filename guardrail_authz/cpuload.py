"""Whether this process is CPU-bound: its share of one CPU over the last few milliseconds."""

from __future__ import annotations

import time

WINDOW = 0.05  # seconds over which the process's CPU use is measured
SATURATED = 0.75  # CPU share above which the process counts as busy


class CpuLoad:
    """Tells whether the process used more than `share` of a CPU over the last WINDOW.

    Cheap enough to ask on every call: the process's CPU time is read once per WINDOW. A
    share of 0 or less means always busy (tests)."""

    __slots__ = ("_busy", "_share", "_since", "_spent")

    def __init__(self, share: float = SATURATED) -> None:
        self._share = share
        self._since = time.perf_counter()
        self._spent = time.process_time()
        self._busy = share <= 0

    def busy(self, now: float) -> bool:
        """Whether the process is CPU-bound; `now` is time.perf_counter()."""
        if now - self._since >= WINDOW:
            spent = time.process_time()
            self._busy = spent - self._spent >= self._share * (now - self._since)
            self._since, self._spent = now, spent
        return self._busy
