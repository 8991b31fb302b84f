"""The Inspector: one hyperscan pass over all values, a second over the few that need
decoding, then Python confirmation (libinjection, URL parsing) of the values a trigger
picked. Built once per detector set at policy load time and cached."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from operator import itemgetter

from guardrail_authz.payload.detect import confirm
from guardrail_authz.payload.detect.base import DETECTORS, RANK, Action, Hit, Rule
from guardrail_authz.payload.detect.matcher import SEPARATOR, Matcher
from guardrail_authz.payload.detect.normalise import decode, normalise
from guardrail_authz.payload.detect.rules_code import (
    DESERIALIZATION,
    LOG4SHELL,
    RAW_DESERIALIZATION,
    SSTI,
)
from guardrail_authz.payload.detect.rules_os import CMDI, TRAVERSAL
from guardrail_authz.payload.detect.rules_protocol import (
    CRLF,
    CRLF_KEYS,
    DECODE,
    NOSQL,
    NOSQL_KEYS,
    SSRF,
)
from guardrail_authz.payload.detect.rules_web import SQLI, XSS
from guardrail_authz.payload.detect.ssrf import classify_url

VALUE_RULES: dict[str, tuple[Rule, ...]] = {
    "sqli": SQLI,
    "xss": XSS,
    "cmdi": CMDI,
    "traversal": TRAVERSAL,
    "ssti": SSTI,
    "log4shell": LOG4SHELL,
    "deserialization": DESERIALIZATION,
    "ssrf": SSRF,
    "crlf": CRLF,
    "nosql": NOSQL,
}
KEY_RULES: dict[str, tuple[Rule, ...]] = {"nosql": NOSQL_KEYS, "crlf": CRLF_KEYS}
_CONFIRM: dict[Action, Callable[[str], str | None]] = {
    Action.SQLI: confirm.sqli,
    Action.XSS: confirm.xss,
    Action.URL: classify_url,
    Action.LOOKUP: confirm.jndi_lookup,
    Action.BASE64: confirm.base64_object,
}
_NO_HIT = len(DETECTORS)
_VALUE = itemgetter(1)
_CMDI = RANK["cmdi"]


class _Engine:
    """A compiled rule set and the per-rule facts the scan loop reads (kept in flat tuples)."""

    __slots__ = ("actions", "matcher", "ranks", "signatures")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.matcher = Matcher(rules)
        self.actions = tuple(r.action for r in rules)
        self.ranks = tuple(RANK.get(r.detector, _NO_HIT) for r in rules)
        self.signatures = tuple(r.signature for r in rules)

    def scan(self, items: Sequence[tuple[str, str]]) -> dict[int, tuple[int, str]]:
        """item index -> (detector rank, signature) of the first detector that fires."""
        values = list(map(_VALUE, items))
        best: dict[int, tuple[int, str]] = {}
        to_decode: set[int] = set()
        to_dequote: set[int] = set()
        # (rank, value, variant, rule) -> the text to confirm; variant 0 is the value itself
        pending: dict[tuple[int, int, int, int], str] = {}
        actions, ranks, signatures = self.actions, self.ranks, self.signatures
        matches, nul_inside = self.matcher.scan(values)
        for idx, rid in matches:
            action = actions[rid]
            if action is Action.HIT or (
                action is Action.SOFT and not items[idx][0].startswith("body")
            ):
                _better(best, idx, ranks[rid], signatures[rid])
            elif action is Action.DECODE:
                to_decode.add(idx)
            elif action is Action.SHELL:
                to_dequote.add(idx)
            elif action is not Action.SOFT:
                pending.setdefault((ranks[rid], idx, 0, rid), values[idx])
        if nul_inside:
            to_decode.update(i for i, v in enumerate(values) if SEPARATOR in v)
        if to_decode or to_dequote:
            self._second_pass(items, values, to_decode, to_dequote, best, pending)
        for (rank, idx, _, rid), text in sorted(pending.items()):
            current = best.get(idx)
            if current is not None and current[0] <= rank:
                continue
            found = _CONFIRM[actions[rid]](text)
            if found is not None:
                best[idx] = (rank, found)
        return best

    def _second_pass(
        self,
        items: Sequence[tuple[str, str]],
        values: Sequence[str],
        to_decode: set[int],
        to_dequote: set[int],
        best: dict[int, tuple[int, str]],
        pending: dict[tuple[int, int, int, int], str],
    ) -> None:
        texts: list[str] = []
        owners: list[int] = []
        shell_only: list[bool] = []
        for idx in sorted(to_decode | to_dequote):
            if best.get(idx, (_NO_HIT,))[0] == 0:
                continue  # nothing can rank before the first detector
            variants = normalise(values[idx])[1:] if idx in to_decode else ()
            texts.extend(variants)
            owners.extend([idx] * len(variants))
            shell_only.extend([False] * len(variants))
            if idx in to_dequote:
                texts.append(confirm.dequote_shell(decode(values[idx])))
                owners.append(idx)
                shell_only.append(True)
        if not texts:
            return
        actions, ranks, signatures = self.actions, self.ranks, self.signatures
        for vi, rid in self.matcher.scan(texts)[0]:
            idx = owners[vi]
            rank = ranks[rid]
            if shell_only[vi] and rank != _CMDI:
                continue
            action = actions[rid]
            if action is Action.HIT or (
                action is Action.SOFT and not items[idx][0].startswith("body")
            ):
                _better(best, idx, rank, signatures[rid])
            elif action in _CONFIRM:
                pending.setdefault((rank, idx, vi + 1, rid), texts[vi])


def _better(best: dict[int, tuple[int, str]], idx: int, rank: int, signature: str) -> None:
    current = best.get(idx)
    if current is None or rank < current[0]:
        best[idx] = (rank, signature)


def _engine(rules: Sequence[Rule]) -> _Engine | None:
    return _Engine(rules) if rules else None


class Inspector:
    """The injection and abuse detectors of one detector set, compiled into hyperscan."""

    __slots__ = ("_keys", "_raw", "_values", "detectors")

    def __init__(self, detectors: frozenset[str]) -> None:
        unknown = sorted(detectors - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown detector(s): {', '.join(unknown)}")
        self.detectors = detectors
        enabled = [d for d in DETECTORS if d in detectors]
        value_rules = [r for d in enabled for r in VALUE_RULES[d]]
        key_rules = [r for d in enabled for r in KEY_RULES.get(d, ())]
        self._values = _engine([*value_rules, *DECODE] if value_rules else [])
        self._keys = _engine([*key_rules, *DECODE] if key_rules else [])
        raw = "deserialization" in detectors
        self._raw = Matcher(RAW_DESERIALIZATION, joined=False) if raw else None

    def scan(self, items: Sequence[tuple[str, str]]) -> list[Hit]:
        """Hits for (field, value) string values; at most one per field, first in DETECTORS."""
        return _hits(self._values, items)

    def scan_keys(self, items: Sequence[tuple[str, str]]) -> list[Hit]:
        """Hits for (field, key) object keys and parameter names: NoSQL operators, CR/LF."""
        return _hits(self._keys, items)

    def scan_raw(self, field: str, data: bytes) -> list[Hit]:
        """Hits for a raw body: serialized object streams (Java, .NET, pickle, Marshal, PHP)."""
        if self._raw is None or not data:
            return []
        signature = confirm.binary_stream(data)
        for rid in self._raw.scan_bytes(data) if signature is None else ():
            rule = self._raw.rules[rid]
            if rule.action is Action.HIT:
                signature = rule.signature
            elif rule.action is Action.BASE64:
                signature = confirm.base64_object(data.decode("latin-1"))
            if signature is not None:
                break
        return [] if signature is None else [Hit("deserialization", field, signature)]


def _hits(engine: _Engine | None, items: Sequence[tuple[str, str]]) -> list[Hit]:
    if engine is None or not items:
        return []
    best = engine.scan(items)
    hits: dict[str, Hit] = {}  # one per field, also when a field repeats (query.a=1&a=2)
    for i, (rank, sig) in sorted(best.items()):
        field = items[i][0]
        seen = hits.get(field)
        if seen is None or rank < RANK[seen.detector]:
            hits[field] = Hit(DETECTORS[rank], field, sig)
    return list(hits.values())


@functools.lru_cache(maxsize=64)
def inspector(detectors: frozenset[str]) -> Inspector:
    """The Inspector for a detector set, built once (raises ValueError for unknown names)."""
    return Inspector(frozenset(detectors))
