"""One hyperscan database per rule set, scanned once over many values joined by NUL."""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import methodcaller

import hyperscan

from guardrail_authz.payload.detect.base import Rule

SEPARATOR = "\x00"  # no pattern matches it, so no match spans two values
_ENCODE = methodcaller("encode", "utf-8", "surrogatepass")


def _collect(pattern_id: int, _start: int, end: int, _flags: int, found: list[int]) -> None:
    # The callback runs once per match: keep it to one append (pattern id and end packed).
    found.append(end << 16 | pattern_id)


class Matcher:
    """A compiled rule set; `scan` says which rules matched inside which of the values."""

    __slots__ = ("_db", "_local", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules or len(rules) >= 1 << 16:
            raise ValueError("a matcher needs between 1 and 65535 rules")
        self.rules = tuple(rules)
        flags = [hyperscan.HS_FLAG_CASELESS if r.caseless else 0 for r in rules]
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=[r.pattern.encode("utf-8") for r in rules],
            ids=list(range(len(rules))),
            elements=len(rules),
            flags=flags,
        )
        self._db = db
        self._local = threading.local()  # one scratch space per thread that scans

    def _scratch(self) -> hyperscan.Scratch:
        scratch: hyperscan.Scratch | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = hyperscan.Scratch(self._db)
            self._local.scratch = scratch
        return scratch

    def scan(self, values: Sequence[str]) -> tuple[list[tuple[int, int]], bool]:
        """(value index, rule index) for each match, in the order of the match ends, and
        whether some value holds a NUL itself (patterns never match across one)."""
        if not values:
            return [], False
        joined = SEPARATOR.join(values)
        nul_inside = joined.count(SEPARATOR) != len(values) - 1
        ascii_only = joined.isascii()
        data = joined.encode("ascii") if ascii_only else _ENCODE(joined)
        found: list[int] = []
        self._db.scan(data, match_event_handler=_collect, context=found, scratch=self._scratch())
        if not found:
            return [], nul_inside
        if len(values) == 1:
            return [(0, packed & 0xFFFF) for packed in found], nul_inside
        lengths = map(len, values) if ascii_only else (len(b) for b in map(_ENCODE, values))
        # starts[i]: the offset just past value i's separator, i.e. where value i+1 begins.
        starts = list(accumulate(n + 1 for n in lengths))
        where = [(bisect_right(starts, (packed >> 16) - 1), packed & 0xFFFF) for packed in found]
        return where, nul_inside

    def scan_bytes(self, data: bytes) -> list[int]:
        """The rule indexes that match in one raw buffer (each once, in first-match order)."""
        found: list[int] = []
        self._db.scan(data, match_event_handler=_collect, context=found, scratch=self._scratch())
        return list(dict.fromkeys(packed & 0xFFFF for packed in found))
