"""Sensitive-data detectors for masking: one hyperscan prefilter pass over every value, then
exact patterns and checks (Luhn, mod-97, IPv6 syntax, JWT header) on the few values it flags."""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import string
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

from guardrail_authz.payload.detect.base import Action, Rule
from guardrail_authz.payload.detect.matcher import SEPARATOR, Matcher

BUILTIN: tuple[str, ...] = (
    "card", "ssn", "email", "phone", "iban", "ipv4", "ipv6", "jwt", "api_token",
)  # fmt: skip

REDACTED = "[redacted]"  # the redact style's output; detectors treat it as a word
Span = tuple[int, int]
Finder = Callable[[str], list[Span]]
Found = tuple[int, int, int, bool]  # start, end, detector index, merged from overlaps


@dataclass(frozen=True, slots=True)
class Detector:
    """A detector: `find` gives the spans to mask in one text; `trigger` is a hyperscan pattern
    matching every text `find` could match in (None: run `find` on every value); `normalise`
    maps a match to what the hash style hashes (equal values, equal hashes, any separators)."""

    name: str
    find: Finder
    trigger: str | None
    normalise: Callable[[str], str]
    pattern: re.Pattern[str] | None = None  # set: `find` is every match of it, nothing more


def _same(text: str) -> str:
    return text


_NOT_DIGITS = {i: None for i in range(128) if not 48 <= i <= 57}
_NOT_DIGIT_BYTES = bytes(i for i in range(256) if not 48 <= i <= 57)


def _digits(text: str) -> str:
    """The ASCII digits of an ASCII text (what the patterns match); other characters beyond
    ASCII stay."""
    if text.isascii():  # a byte table deletes in C; str.translate looks each character up
        return _ascii_digits(text).decode("ascii")
    return text.translate(_NOT_DIGITS)


def _ascii_digits(text: str) -> bytes:
    """The digits of an ASCII text (a match of the patterns), as bytes."""
    return text.encode("ascii").translate(None, _NOT_DIGIT_BYTES)


def _regex_finder(pattern: re.Pattern[str], check: Callable[[str], bool] | None) -> Finder:
    """Every match of the pattern that passes the check (None: the pattern says it all)."""
    if check is None:

        def find_all(text: str) -> list[Span]:
            return [m.span() for m in pattern.finditer(text)]

        return find_all

    def find(text: str) -> list[Span]:
        return [m.span() for m in pattern.finditer(text) if check(m.group())]

    return find


# Boundaries: a match never starts or ends inside a word; `*` counts as a word character and
# the redaction marker as a word, so that what the partial and redact styles leave next to a
# masked value reads as it did before (a second pass changes nothing). Each pattern begins
# with one character (class) and only then looks behind it, at the character before and the
# one just read (`.`): a pattern beginning with a lookbehind would leave the regex engine
# without its fast scan for the first character (3-10x slower).
_AFTER = r"(?<!\[redacted\].)"  # after the first character: no marker before it
_END = r"(?![.-]?\[redacted\])"  # and none right after the match (or after a dot or dash)
_CARD = re.compile(
    r"\d(?<![\w*.]\d)" + _AFTER + r"(?:\d{12,18}|\d{3}(?:[ -]\d{4}){2}[ -]\d{1,4}"
    r"(?:[ -]\d{3})?|\d{3}[ -]\d{6}[ -]\d{4,5})(?![\w*])" + _END,
    re.ASCII,
)
_CARD_TRIGGER = r"\d{4}[ -]?\d{4}[ -]?\d{4}|\d{4}[ -]\d{6}[ -]\d{4}"
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes(_LUHN_DOUBLE))


def luhn(digits: bytes) -> bool:
    """True when ASCII digits pass the Luhn (mod 10) check (summed in C: every other digit
    doubled by a byte table)."""
    kept = digits[-1::-2]
    total = sum(kept) - 48 * len(kept) + sum(digits[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def card_prefix_ok(digits: bytes) -> bool:
    """True when the issuer prefix (IIN) and length of ASCII digits (13 or more) fit a known
    card network."""
    n, four = len(digits), int(digits[:4])
    two = four // 100
    if two // 10 == 4:  # Visa
        return n in (13, 16, 19)
    if 2200 <= four <= 2204:  # Mir
        return n >= 16
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if two in (34, 37):  # American Express
        return n == 15
    if two in (36, 38, 39) or 3000 <= four <= 3059:  # Diners Club
        return n >= 14
    if 3528 <= four <= 3589:  # JCB
        return n >= 16
    if two // 10 == 6 or two in (50, 56, 57, 58):  # Discover, UnionPay, RuPay, Maestro
        return True
    return two in (81, 82) and n == 16  # RuPay


def _card_ok(text: str) -> bool:
    digits = _ascii_digits(text)
    return card_prefix_ok(digits) and luhn(digits)


def _find_cards(text: str) -> list[Span]:
    out: list[Span] = []
    for m in _CARD.finditer(text):
        candidate = m.group()
        if _card_ok(candidate):
            out.append(m.span())
        elif len(candidate) == 23 and _card_ok(candidate[:19]):  # 4-4-4-4 and 3 more digits
            out.append((m.start(), m.start() + 19))
    return out


# US SSN rules in the pattern itself: area not 000, 666 or 9xx; group not 00; serial not 0000.
_SSN = re.compile(
    r"[0-8](?<![\w*.-].)" + _AFTER + r"(?!(?<=0)00|(?<=6)66)\d\d(?P<sep>[- ])(?!00)\d\d(?P=sep)"
    r"(?!0000)\d{4}(?![\w*]|-[\d*])" + _END,
    re.ASCII,
)


_EMAIL_DOMAIN = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9@*-]|\.[A-Za-z0-9*])" + _END,  # x@a.io@b.io: not one address
    re.ASCII,
)
# The local part read backwards from the '@' (on the reversed text: re only matches forwards),
# one character more than the 64 allowed so that a longer run is seen and dropped.
_EMAIL_LOCAL_BACK = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{0,65}")


def _find_emails(text: str) -> list[Span]:
    """Anchor on '@domain', then go back over the local part: at most 64 characters, from
    its first letter or digit, and without '*' (a local part masked to '***n' is no address)."""
    out: list[Span] = []
    backwards, n = text[::-1], len(text)
    for m in _EMAIL_DOMAIN.finditer(text):
        at = m.start()
        back = _EMAIL_LOCAL_BACK.match(backwards, n - at)  # {0,65}: never None
        start = n - back.end() if back is not None else at
        if at - start > 64 or text.find("*", start, at) >= 0 or text.endswith(REDACTED, 0, start):
            continue
        while start < at and not text[start].isalnum():
            start += 1  # quotes and dots around an address are not part of it
        if start < at:
            out.append((start, m.end()))
    return out


# International (+CC and 6-14 more digits in groups) or NANP ([1 ](NXX) NXX-XXXX, N = 2-9);
# the character read first says which form may follow.
_PHONE = re.compile(
    r"[+(\d](?<![\w*+.-].)"
    + _AFTER
    + r"(?:(?<=\+)(?P<intl>[1-9]\d{0,2}(?>[ .-]?\(\d{1,4}\)|[ .-]?\d+)*)"
    r"|(?:(?<=1)[ .-]?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])|(?<=\()[2-9]\d\d\) ?"
    r"|(?<=[2-9])\d\d[ .-])[2-9]\d\d[ .-]\d{4})(?![\w*]|[.-]?[\d*])" + _END,
    re.ASCII,
)


_PHONE_TRIGGER = r"\+\d|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"


def _find_phones(text: str) -> list[Span]:
    return [
        m.span()
        for m in _PHONE.finditer(text)
        if (intl := m.group("intl")) is None or 7 <= len(_ascii_digits(intl)) <= 15
    ]


def _phone_normal(text: str) -> str:
    return ("+" if text.startswith("+") else "") + _digits(text)


_IBAN = re.compile(
    r"[A-Z](?<![\w*][A-Z])" + _AFTER + r"[A-Z]\d\d(?> ?[A-Z0-9]{4})*(?: ?[A-Z0-9]{1,3})?"
    r"(?![A-Za-z0-9*])" + _END,
    re.ASCII,
)
# ISO 13616 lengths of the countries we are sure of; others only need 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30,
    "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip
_BASE36 = {ord(ch): str(int(ch, 36)) for ch in string.digits + string.ascii_letters}


def iban_ok(text: str) -> bool:
    """Country length (where known), check digits 02-98 and the ISO 7064 mod-97 check."""
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34 or _IBAN_LENGTHS.get(iban[:2], len(iban)) != len(iban):
        return False
    if not 2 <= int(iban[2:4]) <= 98:
        return False
    moved = iban[4:] + iban[:4]
    if moved.isascii() and moved.isalnum():  # one translate, not a str(int()) per character
        return int(moved.translate(_BASE36)) % 97 == 1
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _iban_normal(text: str) -> str:
    return text.replace(" ", "").upper()


# Four decimal octets 0-255 without leading zeros (as the ipaddress module reads them), in the
# pattern itself: the first octet's first digit is read before the others.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"
_IPV4 = re.compile(
    r"\d(?<![\w*.]\d)" + _AFTER + r"(?:(?<=1)\d{0,2}|(?<=2)(?:[0-4]\d|5[0-5]|\d?)"
    r"|(?<=[3-9])\d?|(?<=0))" + rf"(?:\.{_OCTET}){{3}}(?![\w*]|\.[\d*])" + _END,
    re.ASCII,
)
_IPV6 = re.compile(
    r"(?<![\w:.*])(?<!\[redacted\])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}"
    r"(?![\w:*]|\.[\d*])" + _END,
    re.ASCII,
)
_HEX = re.compile(r"[0-9A-Fa-f]")


def ipv6_ok(text: str) -> bool:
    """A valid IPv6 address holding at least one hex digit (a bare '::' is punctuation)."""
    if _HEX.search(text) is None:
        return False
    try:
        socket.inet_pton(socket.AF_INET6, text)  # what ipaddress.IPv6Address reads, 10x faster
    except OSError:
        return False
    return True


_JWT = re.compile(
    r"eyJ(?<![\w*.-]eyJ)(?<!\[redacted\]eyJ)[\w-]*\.[\w-]+\.[\w-]*(?![\w*-])" + _END, re.ASCII
)


def jwt_ok(text: str) -> bool:
    """True when the first part decodes (base64url) to a JSON object with a string "alg"."""
    head = text.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


_B = r"(?<![\w*-].)" + _AFTER  # after a token's first character: no word before it
_TOKEN = re.compile(
    rf"(?:A{_B}(?:KIA|SIA)[A-Z0-9]{{16}}|A{_B}Iza[\w-]{{35}}|g{_B}h[pousr]_[A-Za-z0-9]{{36}}"
    rf"|g{_B}ithub_pat_[A-Za-z0-9_]{{22,}}|x{_B}ox[abpr]-[A-Za-z0-9-]{{10,}}"
    rf"|r{_B}k_live_[A-Za-z0-9]{{16,}}|s{_B}k_live_[A-Za-z0-9]{{16,}})(?![\w*-]){_END}",
    re.ASCII,
)


def _every(
    name: str, pattern: re.Pattern[str], trigger: str, normalise: Callable[[str], str]
) -> Detector:
    """A detector that is one pattern: every match is one to mask."""
    return Detector(name, _regex_finder(pattern, None), trigger, normalise, pattern)


_BUILTINS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("card", _find_cards, _CARD_TRIGGER, _digits),
        _every("ssn", _SSN, r"\d{3}[- ]\d\d[- ]\d{4}", _digits),
        Detector("email", _find_emails, r"@[A-Za-z0-9]", str.lower),
        Detector("phone", _find_phones, _PHONE_TRIGGER, _phone_normal),
        Detector("iban", _regex_finder(_IBAN, iban_ok), r"[A-Z]{2}\d\d ?[A-Z0-9]{4}", _iban_normal),
        _every("ipv4", _IPV4, r"\d\.\d{1,3}\.\d{1,3}\.\d", _same),
        Detector(
            "ipv6",
            _regex_finder(_IPV6, ipv6_ok),
            r"::|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){3}",
            str.lower,
        ),
        Detector("jwt", _regex_finder(_JWT, jwt_ok), r"eyJ[\w-]*\.[\w-]+\.", _same),
        _every(
            "api_token",
            _TOKEN,
            r"A(?:KIA|SIA)[A-Z0-9]{16}|gh[pousr]_|github_pat_|xox[abpr]-|[rs]k_live_|AIza",
            _same,
        ),
    )
}


def builtin(name: str) -> Detector:
    """The built-in detector of that name (one of BUILTIN); KeyError otherwise."""
    return _BUILTINS[name]


def custom(name: str, pattern: re.Pattern[str]) -> Detector:
    """A policy's own regex (compiled by the loader); empty matches are ignored."""

    def find(text: str) -> list[Span]:
        return [m.span() for m in pattern.finditer(text) if m.end() > m.start()]

    return Detector(name, find, None, _same)


@lru_cache(maxsize=64)
def _matcher(names: tuple[str, ...]) -> Matcher:
    """One hyperscan database per set of built-ins, shared by every plan that uses it."""
    rules = [Rule(n, f"mask.{n}", _BUILTINS[n].trigger or "", Action.HIT, False) for n in names]
    return Matcher(rules)


class Scanner:
    """The detectors of one mask plan: built-ins prefiltered together, custom ones per value."""

    __slots__ = ("_custom", "_matcher", "_rule_detector", "detectors")

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        prefiltered = [i for i, d in enumerate(self.detectors) if d.trigger is not None]
        self._rule_detector = tuple(prefiltered)
        names = tuple(self.detectors[i].name for i in prefiltered)
        self._matcher = _matcher(names) if names else None
        self._custom = tuple(i for i, d in enumerate(self.detectors) if d.trigger is None)

    def skip_quiet(self, raw: bytes, skip: frozenset[int]) -> frozenset[int]:
        """`skip` with every built-in added when no detector outside it can match a value of
        this JSON text (none is custom, and no trigger of one fires anywhere in it), else
        `skip` as it is: scan runs a finder only on values its trigger fired in, so a quiet
        built-in next to one that fires costs nothing, and the raw scan stops at the first
        trigger that fires. The caller has checked that `raw` spells no ASCII character as an
        escape (hides_ascii: \\u0040 is '@'), else what the raw bytes lack proves nothing."""
        if self.runs_custom(skip) or self._matcher is None:
            return skip
        wanted = frozenset(r for r, i in enumerate(self._rule_detector) if i not in skip)
        if self._matcher.matches_any(raw, wanted):
            return skip
        return skip | frozenset(self._rule_detector)

    def scan(
        self,
        values: Sequence[str],
        skip: frozenset[int] = frozenset(),
        keep: Callable[[int], bool] | None = None,
    ) -> dict[int, list[Found]]:
        """Per value index, the non-overlapping (start, end, detector index, merged) found in
        it, by start; the detectors in `skip` (indexes) do not run, and none runs on a value
        whose index `keep` turns down. Overlapping matches are merged into one span (`merged`
        True)."""
        flagged: dict[int, set[int]] = {}  # detector index -> values its trigger fired in
        if self._matcher is not None:
            hits, _ = self._matcher.scan(values)
            rule_detector, add = self._rule_detector, flagged.setdefault
            for value, rule in hits:
                add(rule_detector[rule], set()).add(value)
        return self.find(values, flagged, skip, keep)

    def runs_custom(self, skip: frozenset[int]) -> bool:
        """True when a custom detector not in `skip` runs (it reads every value)."""
        return any(i not in skip for i in self._custom)

    def hits(self, data: bytes) -> list[int] | None:
        """Where the built-ins' triggers fire in one buffer, packed as (end offset << 16 |
        detector index); None when they flood it (too many to map one by one)."""
        if self._matcher is None:
            return []
        found = self._matcher.matches(data)
        if found is None:
            return None
        if not self._custom:  # then rule i is detector i
            return found
        rule_detector = self._rule_detector
        return [packed & ~0xFFFF | rule_detector[packed & 0xFFFF] for packed in found]

    def find(
        self,
        values: Sequence[str],
        flagged: dict[int, set[int]],
        skip: frozenset[int] = frozenset(),
        keep: Callable[[int], bool] | None = None,
    ) -> dict[int, list[Found]]:
        """scan, given which values each built-in's trigger fired in (`flagged`: detector
        index -> value indexes): only those values meet that built-in's finder."""
        found: dict[int, list[Found]] = {}
        detectors = self.detectors
        for index, which in flagged.items():
            if index not in skip:
                chosen = sorted(which if keep is None else filter(keep, which))
                if chosen:
                    _find_joined(detectors[index].find, index, chosen, values, found)
        custom = [i for i in self._custom if i not in skip]
        if custom:
            kept = range(len(values)) if keep is None else filter(keep, range(len(values)))
            for value in kept:
                text = values[value]
                for index in custom:
                    for start, end in detectors[index].find(text):
                        found.setdefault(value, []).append((start, end, index, False))
        for value, spans in found.items():
            if len(spans) > 1:
                found[value] = _disjoint(spans)
        return found


def _find_joined(
    find: Finder, index: int, which: list[int], values: Sequence[str], found: dict[int, list[Found]]
) -> None:
    """Run a built-in finder once over the flagged values joined by NUL (no built-in pattern
    matches a NUL or reads past one differently from a string's end: one call, not one per
    value), and file each match under its value."""
    if len(which) == 1:
        value = which[0]
        for start, end in find(values[value]):
            found.setdefault(value, []).append((start, end, index, False))
        return
    joined = SEPARATOR.join([values[v] for v in which])
    starts = list(accumulate([len(values[v]) + 1 for v in which[:-1]], initial=0))
    for start, end in find(joined):
        at = bisect_right(starts, start) - 1
        base = starts[at]
        value = which[at]
        if end - base <= len(values[value]):  # never across a separator
            found.setdefault(value, []).append((start - base, end - base, index, False))


def _disjoint(spans: list[Found]) -> list[Found]:
    """Overlapping matches become one span (masking only one would leave the rest of the other
    readable, and a second pass could find it): it goes to the match that starts first, then
    the longer, then the detector listed first."""
    spans.sort(key=lambda f: (f[0], f[0] - f[1], f[2]))
    out: list[Found] = [spans[0]]
    for span in spans[1:]:
        start, end, index, _ = out[-1]
        if span[0] < end:
            out[-1] = (start, max(end, span[1]), index, True)
        else:
            out.append(span)
    return out
