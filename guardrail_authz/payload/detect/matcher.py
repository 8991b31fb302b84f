"""One hyperscan database per rule set, scanned once over many values joined by NUL."""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
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


MAX_MATCHES = 16384  # more in one scan is a flood (benign traffic: a few per KB of values)


def _collect(pattern_id: int, _start: int, end: int, _flags: int, found: Any) -> bool:
    # Runs once per match: one append (pattern id and end packed) and the flood check.
    found.append(end << 16 | pattern_id)
    return len(found) >= MAX_MATCHES  # True stops the scan: see Matcher.scan


def _ids(pattern_id: int, _start: int, _end: int, _flags: int, found: Any) -> None:
    found.append(pattern_id)


def _stop_at(pattern_id: int, _start: int, _end: int, _flags: int, wanted: Any) -> bool:
    return pattern_id in wanted  # True stops the scan: see Matcher.matches_any


def _compile(rules: Sequence[Rule], extra: int) -> hyperscan.Database:
    flags = [(hyperscan.HS_FLAG_CASELESS if r.caseless else 0) | extra for r in rules]
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=[r.pattern.encode("utf-8") for r in rules],
        ids=list(range(len(rules))),
        elements=len(rules),
        flags=flags,
    )
    return db


class Matcher:
    """A compiled rule set; `scan` says which rules matched inside which of the values.

    Two databases: one reporting every match, scanned once over all values joined by NUL,
    and one reporting each rule once per scan (HS_FLAG_SINGLEMATCH), scanned value by value.
    The second serves raw bodies, and values whose matches flood the first (thousands of
    "<a" or "%41" cost a Python callback each). For value scans it is compiled in a
    background thread (hyperscan releases the GIL), so a policy load waits for one database;
    a flood in the first second after a load waits for the rest of that compile.
    """

    __slots__ = ("_db", "_local", "_lock", "_single", "rules")

    def __init__(self, rules: Sequence[Rule], *, joined: bool = True) -> None:
        if not rules or len(rules) >= 1 << 16:
            raise ValueError("a matcher needs between 1 and 65535 rules")
        self.rules = tuple(rules)
        self._local = threading.local()  # scratch spaces of the thread that scans
        self._lock = threading.Lock()  # held while the single-match database compiles
        self._single: hyperscan.Database | None = None
        if not joined:
            self._db = None
            self._single = _compile(rules, hyperscan.HS_FLAG_SINGLEMATCH)
            return
        self._db = _compile(rules, 0)
        self._lock.acquire()  # released by the compiling thread
        threading.Thread(target=self._compile_single, name="hyperscan-compile", daemon=True).start()

    def _compile_single(self) -> None:
        try:
            self._single = _compile(self.rules, hyperscan.HS_FLAG_SINGLEMATCH)
        finally:
            self._lock.release()

    def _scratch(self, db: hyperscan.Database, name: str) -> hyperscan.Scratch:
        scratch: hyperscan.Scratch | None = getattr(self._local, name, None)
        if scratch is None:
            scratch = hyperscan.Scratch(db)
            setattr(self._local, name, scratch)
        return scratch

    def _single_db(self) -> hyperscan.Database:
        single = self._single
        if single is None:
            with self._lock:  # waits for the background compile
                if self._single is None:  # it failed: its error surfaces here
                    self._single = _compile(self.rules, hyperscan.HS_FLAG_SINGLEMATCH)
                single = self._single
        return single

    def scan(self, values: Sequence[str]) -> tuple[list[tuple[int, int]], bool]:
        """(value index, rule index) for each match, in the order of the match ends, and
        whether some value holds a NUL itself (patterns never match across one)."""
        if not values or self._db is None:
            return [], False
        joined = SEPARATOR.join(values)
        data = joined.encode("ascii") if joined.isascii() else utf8(joined)
        nul_inside = data.count(b"\x00") != len(values) - 1
        found = self.matches(data)
        if found is None:
            return self._each(values), nul_inside
        if not found:
            return [], nul_inside
        if len(values) == 1:
            return [(0, packed & 0xFFFF) for packed in found], nul_inside
        if nul_inside:
            return _by_lengths(values, found), True
        return [(index, packed & 0xFFFF) for index, packed in sweep(data, found, b"\x00")], False

    def matches(self, data: bytes) -> list[int] | None:
        """Every match in one buffer, packed as (end offset << 16 | rule index), in the order
        hyperscan reports them; None when they flood (MAX_MATCHES: scan then goes value by
        value)."""
        if self._db is None:
            raise ValueError("a matcher built with joined=False scans values one by one")
        found: list[int] = []
        try:
            self._db.scan(
                data,
                match_event_handler=_collect,
                context=found,
                scratch=self._scratch(self._db, "db"),
            )
        except hyperscan.ScanTerminated:
            return None
        return found

    def _each(self, values: Sequence[str]) -> list[tuple[int, int]]:
        """Value by value with the single-match database: each rule once per value."""
        db = self._single_db()
        scratch = self._scratch(db, "single")
        where: list[tuple[int, int]] = []
        for index, value in enumerate(values):
            found: list[int] = []
            db.scan(utf8(value), match_event_handler=_ids, context=found, scratch=scratch)
            where.extend((index, rule) for rule in found)
        return where

    def scan_bytes(self, data: bytes) -> list[int]:
        """The rule indexes that match in one raw buffer (each once, in first-match order)."""
        found: list[int] = []
        db = self._single_db()
        db.scan(data, match_event_handler=_ids, context=found, scratch=self._scratch(db, "single"))
        return found

    def matches_any(self, data: bytes, rules: frozenset[int]) -> bool:
        """True when one of `rules` (indexes) matches in one raw buffer; the scan stops at
        the first such match (scan_bytes reads the whole buffer)."""
        if not rules:
            return False
        db = self._single_db()
        try:
            db.scan(
                data,
                match_event_handler=_stop_at,
                context=rules,
                scratch=self._scratch(db, "single"),
            )
        except hyperscan.ScanTerminated:
            return True
        return False


def sweep(data: bytes, found: list[int], separator: bytes) -> list[tuple[int, int]]:
    """(piece index, packed match) for each match of `found` (packed, as matches() gives them;
    sorted here, in place, by end offset): the piece is the number of separators before the
    match's last byte. One sweep of C-level counts maps them all, no per-piece work. Matches
    never hold a separator themselves."""
    found.sort()
    where: list[tuple[int, int]] = []
    index = pos = 0
    count = data.count
    for packed in found:
        last = (packed >> 16) - 1
        if last > pos:
            index += count(separator, pos, last)
            pos = last
        where.append((index, packed))
    return where


def _by_lengths(values: Sequence[str], found: list[int]) -> list[tuple[int, int]]:
    """Map match ends to values by their byte lengths (when a value holds a NUL itself)."""
    starts = list(accumulate(len(utf8(v)) + 1 for v in values))  # where value i+1 begins
    return [(bisect_right(starts, (packed >> 16) - 1), packed & 0xFFFF) for packed in found]
