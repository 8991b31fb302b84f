"""The detector names, the Hit a scan reports, and the Rule a signature table is made of."""

from __future__ import annotations

import enum
from dataclasses import dataclass

DETECTORS: tuple[str, ...] = (
    "sqli",
    "xss",
    "cmdi",
    "traversal",
    "ssti",
    "log4shell",
    "deserialization",
    "ssrf",
    "crlf",
    "nosql",
)
RANK: dict[str, int] = {name: i for i, name in enumerate(DETECTORS)}


@dataclass(frozen=True, slots=True)
class Hit:
    """One finding: which detector fired on which field, and why (never the payload itself)."""

    detector: str  # one of DETECTORS
    field: str  # the field path given by the caller, e.g. "body.items[0].name"
    signature: str  # e.g. "libinjection:s&sos", "sqli.union-select"


class Action(enum.Enum):
    """What a pattern match means: a finding, or a reason to look closer at the value."""

    HIT = "hit"  # the detector fires
    DECODE = "decode"  # the value holds encodings: scan its normalised variants too
    SQLI = "sqli"  # ask libinjection's SQL tokenizer
    XSS = "xss"  # ask libinjection's HTML tokenizer
    URL = "url"  # parse the value as a URL and classify its host and scheme
    LOOKUP = "lookup"  # resolve nested Log4j lookups, then look for jndi
    SHELL = "shell"  # scan the value again with shell quoting removed (cmdi only)
    SOFT = "soft"  # a finding outside body fields only (raw CR/LF is normal in body text)
    BASE64 = "base64"  # decode the base64 run (inflating gzip) and look for a serialized object


@dataclass(frozen=True, slots=True)
class Rule:
    """One hyperscan pattern, the detector it belongs to and what a match means."""

    detector: str  # a DETECTORS name; for DECODE triggers the empty string (any detector)
    signature: str  # short id reported in a Hit, e.g. "sqli.union-select"
    pattern: str  # hyperscan syntax; must never match the value separator NUL
    action: Action = Action.HIT
    caseless: bool = True


def hit(detector: str, name: str, pattern: str, *, caseless: bool = True) -> Rule:
    """A rule whose match is a finding, with signature id "<detector>.<name>"."""
    return Rule(detector, f"{detector}.{name}", pattern, Action.HIT, caseless)


def trigger(
    detector: str, action: Action, name: str, pattern: str, *, caseless: bool = True
) -> Rule:
    """A rule whose match sends the value to a closer (Python or libinjection) check."""
    return Rule(detector, f"{detector or 'any'}.{name}", pattern, action, caseless)
