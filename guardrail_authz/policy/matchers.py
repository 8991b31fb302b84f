"""Matchers built once at load time: globs, host patterns, header and query conditions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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
