"""Matchers built once at load time: globs, host patterns, header and query conditions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guardrail_authz.policy.source import MatchOp


@dataclass(frozen=True, slots=True)
class GlobSet:
    """Any-of a set of exact names and '*' globs ('*' matches any run of characters)."""

    exact: frozenset[str]
    pattern: re.Pattern[str] | None

    @classmethod
    def build(cls, items: Iterable[str]) -> GlobSet:
        """Split items into exact names and one combined regex for the globs."""
        exact: set[str] = set()
        globs: list[str] = []
        for item in items:
            if "*" in item:
                globs.append(".*".join(re.escape(part) for part in item.split("*")))
            else:
                exact.add(item)
        pattern = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None
        return cls(frozenset(exact), pattern)

    def __bool__(self) -> bool:
        return bool(self.exact) or self.pattern is not None

    def matches(self, value: str | None) -> bool:
        """True when value equals a name or fully matches a glob."""
        if value is None:
            return False
        if value in self.exact:
            return True
        return self.pattern is not None and self.pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A header or query condition with its regex compiled."""

    name: str
    op: MatchOp
    value: str
    regex: re.Pattern[str] | None

    def holds(self, actual: str | None) -> bool:
        """Evaluate against the actual value (None when the header/parameter is absent)."""
        op = self.op
        if op is MatchOp.ABSENT:
            return actual is None
        if actual is None:
            return False
        if op is MatchOp.PRESENT:
            return True
        if op is MatchOp.EQUALS:
            return actual == self.value
        if op is MatchOp.PREFIX:
            return actual.startswith(self.value)
        return self.regex is not None and self.regex.fullmatch(actual) is not None


def compile_regex(pattern: str) -> re.Pattern[str] | str:
    """Compile a policy regex; returns the error text instead of raising."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        return f"invalid regex {pattern!r}: {exc}"


def host_candidates(host: str) -> list[str]:
    """Index keys to try for a host, most specific first: exact, '*.suffix'..., '*'."""
    keys = [host]
    rest = host
    while "." in rest:
        rest = rest.split(".", 1)[1]
        keys.append("*." + rest)
    keys.append("*")
    return keys


CLAIM_OPS = ("equals", "contains", "prefix", "regex", "gt", "gte", "lt", "lte", "present")


@dataclass(frozen=True, slots=True)
class ClaimCondition:
    """A condition on one JWT claim; `path` is the claim name split on dots (nested claims)."""

    path: tuple[str, ...]
    op: str  # one of CLAIM_OPS
    text: str  # the value for string operators
    number: float  # the value for gt/gte/lt/lte
    regex: re.Pattern[str] | None

    def holds(self, claims: Mapping[str, Any] | None) -> bool:
        """False without claims (no JWT) or without the claim; lists hold when one item does."""
        value = claim_value(claims, self.path)
        if value is None:
            return False
        op = self.op
        if op == "present":
            return True
        if op in ("gt", "gte", "lt", "lte"):
            return _compare(op, value, self.number)
        if op == "contains":
            if isinstance(value, str):
                return self.text in value.split()
            return isinstance(value, list) and any(_as_text(v) == self.text for v in value)
        items = value if isinstance(value, list) else [value]
        return any(self._text_holds(_as_text(v)) for v in items)

    def _text_holds(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.op == "equals":
            return actual == self.text
        if self.op == "prefix":
            return actual.startswith(self.text)
        return self.regex is not None and self.regex.fullmatch(actual) is not None


def claim_value(claims: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    """The claim at a dotted path (('org', 'id') for org.id), or None."""
    value: Any = claims
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def claim_text(claims: Mapping[str, Any] | None, path: tuple[str, ...]) -> str | None:
    """A claim as header-safe text (lists joined with ','), or None when absent, not a
    scalar or list of scalars, or holding control characters."""
    value = claim_value(claims, path)
    items = value if isinstance(value, list) else [value]
    texts = [_as_text(v) for v in items]
    if not texts or any(t is None for t in texts):
        return None
    text = ",".join(t for t in texts if t is not None)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None
    return text


def _as_text(value: Any) -> str | None:
    """Claim scalars as policy text: strings as they are, true/false, numbers in JSON form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return None


def _compare(op: str, value: Any, number: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if op == "gt":
        return value > number
    if op == "gte":
        return value >= number
    if op == "lt":
        return value < number
    return value <= number
