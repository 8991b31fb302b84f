"""One hyperscan database per rule set, scanned once over many values joined by NUL."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import hyperscan

from guardrail_authz.payload.detect.base import Rule

SEPARATOR = "\x00"  # no pattern matches it, so no match spans two values


def utf8(text: str) -> bytes:
    """text as UTF-8; lone surrogates (which JSON can carry) pass through instead of failing."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _collect(pattern_id: int, _start: int, end: int, _flags: int, found: Any) -> None:
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
        data = joined.encode("ascii") if joined.isascii() else utf8(joined)
        nul_inside = data.count(b"\x00") != len(values) - 1
        found: list[int] = []
        self._db.scan(data, match_event_handler=_collect, context=found, scratch=self._scratch())
        if not found:
            return [], nul_inside
        if len(values) == 1:
            return [(0, packed & 0xFFFF) for packed in found], nul_inside
        # The value of a match is the number of separators before its last byte. Matches come
        # by end offset, so one sweep of C-level counts maps them all (no per-value work).
        found.sort()
        where: list[tuple[int, int]] = []
        index = pos = 0
        count = data.count
        for packed in found:
            last = (packed >> 16) - 1
            if last > pos:
                index += count(b"\x00", pos, last)
                pos = last
            where.append((index, packed & 0xFFFF))
        return where, nul_inside

    def scan_bytes(self, data: bytes) -> list[int]:
        """The rule indexes that match in one raw buffer (each once, in first-match order)."""
        found: list[int] = []
        self._db.scan(data, match_event_handler=_collect, context=found, scratch=self._scratch())
        return list(dict.fromkeys(packed & 0xFFFF for packed in found))
