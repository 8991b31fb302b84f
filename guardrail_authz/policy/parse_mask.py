"""Parse a route's `mask:` section: fields by JSON path, detectors, request headers, styles
and exemptions."""

from __future__ import annotations

import re

from guardrail_authz.payload.mask import STYLES
from guardrail_authz.payload.mask_detect import BUILTIN
from guardrail_authz.policy.names import HEADER_NAME as _HEADER
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.source import Where
from guardrail_authz.policy.source_mask import (
    DetectorMaskSpec,
    ExemptSpec,
    FieldMaskSpec,
    HeaderMaskSpec,
    MaskSpec,
)

DEFAULT_MAX_BYTES = 1_048_576
MAX_BYTES = 64 * 1024 * 1024
MAX_KEEP = 8  # more could leave a whole card-shaped run of a long IBAN readable
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
HEADER_STYLES = ("remove", *STYLES)
GUARDRAIL_PREFIX = "x-guardrail-"


def mask_spec(r: Reader) -> MaskSpec:
    """`mask:` which body values (field paths, detectors) and request headers to mask, how,
    for whom, and limits."""
    r.only(
        "response", "request", "fields", "detectors", "headers", "exempt", "compressed", "maxBytes"
    )
    bodies = bool(r.data.get("fields") or r.data.get("detectors"))
    response = bool(r.flag("response", default=bodies))  # headers only: no body to ask for
    request = bool(r.flag("request", default=False))
    fields = [_field(r.sub(item, path, line)) for item, path, line in r.items("fields")]
    detectors = [_detector(r.sub(item, path, line)) for item, path, line in r.items("detectors")]
    headers = [_header(r.sub(item, path, line)) for item, path, line in r.items("headers")]
    exempt = _exempt(r)
    compressed = r.choice("compressed", ("decompress", "skip"), "decompress")
    max_bytes = r.integer("maxBytes", lo=1, hi=MAX_BYTES) or DEFAULT_MAX_BYTES
    if r.ok and not bodies and not r.data.get("headers"):
        msg = "give 'fields', 'detectors' or 'headers': this mask section masks nothing"
        r.error(None, "mask.empty", msg)
    elif r.ok and bodies and not response and not request:
        r.error(None, "mask.direction", "response and request are both false: nothing is masked")
    elif r.ok and not bodies and (response or request):
        key = "response" if response else "request"
        msg = f"{key!r} picks the bodies that 'fields' and 'detectors' mask; this section has none"
        r.error(key, "mask.direction", msg)
    kept_fields = tuple(f for f in fields if f is not None)
    kept_detectors = tuple(d for d in detectors if d is not None)
    kept_headers = tuple(h for h in headers if h is not None)
    _no_repeats(r, [(f.path, f.where) for f in kept_fields], "path")
    _no_repeats(r, [(d.detector, d.where) for d in kept_detectors], "detector")
    _no_repeats(r, [(h.name, h.where) for h in kept_headers], "header")
    return MaskSpec(
        response,
        request,
        kept_fields,
        kept_detectors,
        exempt,
        compressed,
        max_bytes,
        r.where(),
        headers=kept_headers,
    )


def _field(f: Reader) -> FieldMaskSpec | None:
    if not f.ok:
        return None
    f.only("path", "style", "keep", "exempt")
    path = f.text("path", required=True)
    style, keep = _style(f)
    exempt = _exempt(f)
    return None if path is None else FieldMaskSpec(path, style, keep, exempt, f.where("path"))


def _detector(d: Reader) -> DetectorMaskSpec | None:
    if not d.ok:
        return None
    d.only("detector", "name", "regex", "style", "keep", "exempt")
    known = ", ".join(BUILTIN)
    builtin, name, regex = d.text("detector"), d.text("name"), d.text("regex")
    style, keep = _style(d)
    exempt = _exempt(d)
    given = {key for key in ("detector", "name", "regex") if key in d.data}
    if "detector" in given and given != {"detector"}:
        msg = "give either 'detector' (a built-in) or 'name' and 'regex' (your own), not both"
        d.error(None, "mask.detector", msg)
        return None
    if "detector" in given:
        if builtin is None:
            return None  # reported by text()
        if builtin not in BUILTIN:
            d.error("detector", "mask.detector", f"unknown detector {builtin!r} (known: {known})")
            return None
        return DetectorMaskSpec(builtin, None, style, keep, exempt, d.where())
    if given != {"name", "regex"}:
        msg = f"give 'detector' (one of {known}) or both 'name' and 'regex'"
        d.error(None, "mask.detector", msg)
        return None
    if name is None or regex is None:
        return None  # reported by text()
    if not _NAME.fullmatch(name):
        msg = f"{name!r}: use lower-case letters, digits, '-' and '_' (at most 63)"
        d.error("name", "mask.name", msg)
        return None
    if name in BUILTIN:
        d.error("name", "mask.name", f"{name!r} is a built-in: write 'detector: {name}' instead")
        return None
    return DetectorMaskSpec(name, regex, style, keep, exempt, d.where("regex"))


def _header(h: Reader) -> HeaderMaskSpec | None:
    if not h.ok:
        return None
    h.only("name", "style", "keep", "exempt")
    name = h.text("name", required=True)
    style, keep = _style(h, HEADER_STYLES)
    exempt = _exempt(h)
    if name is None:
        return None  # reported by text()
    if not _HEADER.fullmatch(name):
        hint = f": write it in lower case, {name.lower()!r}" if name != name.lower() else ""
        h.error("name", "field.header", f"{name!r} is not a valid header name{hint}")
        return None
    if name.startswith(GUARDRAIL_PREFIX):
        msg = f"{name!r}: x-guardrail-* headers are the guardrail's own (it sets or strips them)"
        h.error("name", "mask.header", msg)
        return None
    return HeaderMaskSpec(name, style, keep, exempt, h.where("name"))


def _style(r: Reader, styles: tuple[str, ...] = STYLES) -> tuple[str, int]:
    style = r.choice("style", styles, "redact")
    keep = r.integer("keep", lo=0, hi=MAX_KEEP)
    if keep is not None and style != "partial":
        r.error("keep", "mask.keep", "'keep' applies to style partial only")
    return style, 4 if keep is None else keep


def _exempt(r: Reader) -> ExemptSpec | None:
    e = r.mapping("exempt")
    if e is None:
        return None
    e.only("principals", "roles")
    principals, roles = e.text_list("principals"), e.text_list("roles")
    if e.ok and not any(e.data.get(key) for key in ("principals", "roles")):
        e.error(None, "mask.exempt", "give 'principals' (globs) or 'roles': exempt whom?")
    return ExemptSpec(principals, roles, e.where())


def _no_repeats(r: Reader, items: list[tuple[str, Where]], what: str) -> None:
    seen: set[str] = set()
    for value, w in items:
        if value in seen:
            r.sink.add(
                "mask.duplicate", f"{what} {value!r} is listed twice", w.file, w.line, w.field
            )
        seen.add(value)
