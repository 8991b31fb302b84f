"""Mask sensitive data in JSON bodies: a route's compiled MaskPlan, and mask_body, which the
external processing service calls once per buffered request or response body."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib

from guardrail_authz.payload.mask_detect import REDACTED, Scanner
from guardrail_authz.payload.mask_path import (
    FIELD,
    JsonPath,
    Slot,
    dump,
    finish,
    hides_ascii,
    leaves,
    load_json,
    number_text,
)
from guardrail_authz.payload.mask_style import keeping, mask_hash, partial
from guardrail_authz.payload.mask_text import HitValues, SplitValues
from guardrail_authz.policy.matchers import GlobSet

__all__ = [
    "STYLES", "Exemption", "HeaderMaskRule", "MaskOutcome", "MaskPlan", "MaskRule", "Style",
    "mask_body", "mask_hash", "partial",
]  # fmt: skip

log = logging.getLogger(__name__)

STYLES = ("redact", "partial", "hash")
# ISA-L's deflate (isal) at its default level 2: a 64 KB JSON page in 0.09 ms and 19% larger
# than zlib level 6 makes it, which took 1.1 ms (docs/masking.md); it inflates 3x faster too.
_LEVEL = 2
_ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]  # stub: an instance
_ZLIB_ERRORS = (zlib.error, _ISAL_ERROR)


@dataclass(frozen=True, slots=True)
class MaskOutcome:
    """What mask_body did: the new body (None: pass the original through unchanged), values
    masked per rule label ("field:$.a.b", "detector:card"), and why the body was not
    inspected: exempt, empty, not_json, charset, too_large, compressed, unsupported_encoding,
    bad_encoding, malformed_json, too_deep or error."""

    body: bytes | None
    counts: Mapping[str, int]
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class Exemption:
    """Callers who see values unmasked: principal globs ('*' any run) or any of some roles."""

    principals: GlobSet
    roles: frozenset[str]

    def applies(self, principal: str | None, roles: frozenset[str]) -> bool:
        """True when the caller's principal matches or it holds one of the roles."""
        return self.principals.matches(principal) or not self.roles.isdisjoint(roles)


@dataclass(frozen=True, slots=True)
class Style:
    """How a value is masked: redact, partial (keep the last `keep` letters/digits), hash."""

    kind: str  # one of STYLES
    keep: int = 4


@dataclass(frozen=True, slots=True)
class MaskRule:
    """A field rule (masks the values `path` selects) or a detector rule (masks what the
    detector at the same index of the plan's scanner finds in string values)."""

    label: str  # "field:" + the path as written, or "detector:" + the detector name
    style: Style
    exemption: Exemption | None = None
    path: JsonPath | None = None  # field rules only


@dataclass(frozen=True, slots=True)
class HeaderMaskRule:
    """A request header that ext_authz masks when it allows a request: removed (style None)
    or replaced by its masked value."""

    name: str  # lower case
    style: Style | None  # None: the header is removed
    exemption: Exemption | None = None

    def masked(self, value: str, key: bytes) -> str | None:
        """What the upstream gets in place of `value`; None: the header is removed."""
        return None if self.style is None else _styler(self.style, key)(value)


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """A route's masking rules, compiled once at policy load and never changed."""

    response: bool
    request: bool
    fields: tuple[MaskRule, ...] = ()
    detectors: tuple[MaskRule, ...] = ()
    scanner: Scanner | None = None
    exemption: Exemption | None = None
    decompress: bool = True  # gzip/deflate bodies: False passes them through ("compressed")
    max_bytes: int = 1_048_576  # bodies (and decompressed bodies) above this are not inspected
    policy: str = ""
    headers: tuple[HeaderMaskRule, ...] = ()  # request headers, masked by ext_authz on allow

    def exempt(self, principal: str | None, roles: frozenset[str]) -> bool:
        """True when the whole mask section is skipped for this caller."""
        return self.exemption is not None and self.exemption.applies(principal, roles)


def mask_body(
    plan: MaskPlan,
    body: bytes,
    *,
    content_type: str,
    content_encoding: str,
    principal: str | None,
    roles: frozenset[str],
    key: bytes,
) -> MaskOutcome:
    """Mask one JSON body by the plan's field rules, then its detectors over the remaining
    string values; never raises (bad input is passed through with a `skipped` reason)."""
    try:
        return _mask_body(plan, body, content_type, content_encoding, principal, roles, key)
    except Exception:  # the documented contract: an outcome, never an exception
        log.exception("masking failed; the body is passed through unchanged")
        return MaskOutcome(None, {}, "error")


def _mask_body(
    plan: MaskPlan,
    body: bytes,
    content_type: str,
    content_encoding: str,
    principal: str | None,
    roles: frozenset[str],
    key: bytes,
) -> MaskOutcome:
    if plan.exempt(principal, roles):
        return _skip("exempt")
    fields = [f for f in plan.fields if not _exempt(f.exemption, principal, roles)]
    skip = frozenset(
        i for i, d in enumerate(plan.detectors) if _exempt(d.exemption, principal, roles)
    )
    if not fields and len(skip) == len(plan.detectors):
        return _skip("exempt")
    if not body:
        return _skip("empty")
    reason = _media_problem(content_type)
    if reason is None and len(body) > plan.max_bytes:
        reason = "too_large"
    if reason is not None:
        return _skip(reason)
    encoding = content_encoding.strip().lower()
    wbits = 0
    if encoding in ("gzip", "x-gzip", "deflate"):
        if not plan.decompress:
            return _skip("compressed")
        inflated = _inflate(bytes(body), 31 if encoding != "deflate" else 15, plan.max_bytes)
        if isinstance(inflated, str):
            return _skip(inflated)
        body, wbits = inflated
    elif encoding not in ("", "identity"):
        return _skip("unsupported_encoding")
    body = bytes(body)
    if not hides_ascii(body):  # then what the raw bytes lack, no value can hold
        if plan.scanner is not None:
            skip = plan.scanner.skip_quiet(body, skip)
        fields = [f for f in fields if f.path is None or _may_select(f.path, body)]
    if not fields and len(skip) == len(plan.detectors):
        return MaskOutcome(None, {})  # no rule can match anything here: not even parsed
    try:
        doc = load_json(body)
    except RecursionError:
        return _skip("too_deep")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, huge integers, NaN/Infinity
        return _skip("malformed_json")
    counts: dict[str, int] = {}
    _apply_fields(doc.holder, fields, key, counts, doc.mark)
    try:
        text, surrogates = dump(doc)
    except RecursionError:
        return _skip("too_deep")
    if plan.scanner is not None and len(skip) < len(plan.detectors):
        text = _apply_detectors(text, doc.mark, plan.scanner, plan.detectors, skip, key, counts)
    if not counts:
        return MaskOutcome(None, counts)
    out = finish(doc, text, surrogates)
    if wbits:
        compressor = isal_zlib.compressobj(_LEVEL, isal_zlib.DEFLATED, wbits)
        out = compressor.compress(out) + compressor.flush()
    return MaskOutcome(out, counts)


def _may_select(path: JsonPath, raw: bytes) -> bool:
    """False when the path needs a member name the JSON text does not hold."""
    return all(hint in raw for hint in path.hints)


def _skip(reason: str) -> MaskOutcome:
    return MaskOutcome(None, {}, reason)


def _exempt(exemption: Exemption | None, principal: str | None, roles: frozenset[str]) -> bool:
    return exemption is not None and exemption.applies(principal, roles)


def _media_problem(content_type: str) -> str | None:
    """None for application/json or any +json type in UTF-8, else the skip reason."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.endswith("+json") and "/" in media):
        return "not_json"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return "charset"
    return None


class _TooLargeError(Exception):
    """Decompressed output went past the plan's max_bytes."""


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, int] | str:
    """The decompressed body and the wbits to compress it back with, or the skip reason;
    never holds more than `limit` + 1 decompressed bytes (a gzip bomb stops there)."""
    for bits in (wbits, -15) if wbits == 15 else (wbits,):  # deflate: zlib-wrapped, else raw
        try:
            return _inflate_with(data, bits, limit), bits
        except _TooLargeError:
            return "too_large"
        except _ZLIB_ERRORS:
            continue
    return "bad_encoding"


def _inflate_with(data: bytes, wbits: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:  # one round per gzip member (concatenated members are one body)
        inflater = isal_zlib.decompressobj(wbits)
        chunk = inflater.decompress(data, limit + 1 - size)
        size += len(chunk)
        chunks.append(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise _TooLargeError
        if not inflater.eof:
            raise zlib.error("truncated stream")
        data = inflater.unused_data
        if not data:
            return b"".join(chunks)
        if wbits != 31:
            raise zlib.error("data after the end of the stream")


def _styler(style: Style, key: bytes) -> Callable[[str], str]:
    """How a value is masked in this style under this key (bound once per rule, called per
    value)."""
    if style.kind == "redact":
        return lambda _text: REDACTED
    if style.kind == "partial":
        return keeping(style.keep)
    return lambda text: mask_hash(key, text)


def _apply_fields(
    holder: list[Any], fields: list[MaskRule], key: bytes, counts: dict[str, int], mark: str
) -> None:
    """Mask what each path selects (numbers become strings); a value two rules select is
    masked by the first. Every value selected is written after `mark` + FIELD, so that the
    detectors leave it alone (finish() drops the marks)."""
    # The values already masked, when one could be reached twice: by two rules, or by one
    # with a descendant step (`$..a` selects an `a` inside another `a`). Other paths select
    # values at one depth, each once.
    done: set[tuple[int, Any]] = set()
    several = len(fields) > 1 or any(
        step.descendant for rule in fields if rule.path is not None for step in rule.path.steps
    )
    marked = mark + FIELD
    for rule in fields:
        n = 0
        styled = _styler(rule.style, key)
        for container, slot in rule.path.select(holder) if rule.path is not None else ():
            value = container[slot]
            if type(value) is str and not several:  # the usual one: no walk, nothing to note
                new = styled(value)
                if new != value:
                    n += 1
                container[slot] = marked + new
                continue
            if type(value) is dict or type(value) is list:
                spots: Iterable[Slot] = leaves(container, slot)
            elif value is None or type(value) is bool:
                continue  # true, false and null are never masked
            else:
                spots = ((container, slot),)
            for c, k in spots:
                if several:
                    if (id(c), k) in done:
                        continue
                    done.add((id(c), k))
                value = c[k]
                new = styled(value if type(value) is str else number_text(value))
                if new != value:
                    n += 1
                c[k] = marked + new
        if n:
            counts[rule.label] = counts.get(rule.label, 0) + n


def _apply_detectors(
    data: bytes,
    mark: str,
    scanner: Scanner,
    rules: tuple[MaskRule, ...],
    skip: frozenset[int],
    key: bytes,
    counts: dict[str, int],
) -> bytes:
    """Scan every string value of the written document (`dump`) that no field rule selected;
    replace only what was found. Returns the new text."""
    hits = None
    if not scanner.runs_custom(skip) and b'\\"' not in data:
        hits = scanner.hits(data)
    hits_per_rule = [0] * len(rules)
    styled = [
        _detector_styler(rule.style, detector.normalise, key)
        for rule, detector in zip(rules, scanner.detectors, strict=True)
    ]
    strings: HitValues | SplitValues
    if hits is not None:
        strings = HitValues(data, mark.encode("ascii"), hits)
        alone, shared = strings.alone(skip)
        for d, which in alone.items():  # no other detector to overlap with: masked in one go
            detector = scanner.detectors[d]
            every = None
            if detector.pattern is not None and rules[d].style.kind == "redact":
                every = (detector.pattern, REDACTED)
            n = strings.mask_joined(which, detector.find, styled[d], every)
            if n is None:  # overlapping matches (or one across two values): value by value
                shared[d] = shared.get(d, set()) | set(which)
            else:
                hits_per_rule[d] += n
        values = strings.texts(set().union(*shared.values())) if shared else []
        found = scanner.find(values, shared, skip)
    else:  # custom detectors read every value; escaped quotes and floods need the split
        strings = SplitValues(data, mark)
        values = strings.values
        found = scanner.scan(values, skip, strings.keep)
    for index, spans in found.items():
        value = out = values[index]
        for start, end, d, merged in reversed(spans):  # from the right: offsets stay valid
            piece = value[start:end]
            if merged and rules[d].style.kind == "partial":  # overlaps: no telling which end
                new = partial(piece, 0)
            else:
                new = styled[d](piece)
            if new != piece:
                out = out[:start] + new + out[end:]
                hits_per_rule[d] += 1
        if out is not value:
            strings.replace(index, out)
    for rule, n in zip(rules, hits_per_rule, strict=True):
        if n:
            counts[rule.label] = counts.get(rule.label, 0) + n
    return strings.result()


def _detector_styler(
    style: Style, normalise: Callable[[str], str], key: bytes
) -> Callable[[str], str]:
    """How a detector's match is masked; the hash style hashes the normalised match."""
    if style.kind == "hash":
        return lambda piece: mask_hash(key, normalise(piece))
    return _styler(style, key)
