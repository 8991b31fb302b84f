"""Evasion-undoing normalisation: the variants of a value that the signatures are matched on.

Undone: URL encoding (up to four rounds, so double and triple encoding too, with `%uXXXX`
and overlong UTF-8 forms of `.` `/` `\\`), HTML entities (named, decimal, hex, with or
without the semicolon), backslash escapes (`\\u003c`, `\\u{3c}`, `\\x3c`, `\\r`, `\\n`, `\\t`),
Unicode NFKC (fullwidth and other compatibility forms), look-alikes of `/` and `\\` that
NFKC keeps (division slash, fraction slash, set minus), zero-width characters, NUL bytes,
`/./` path segments, SQL comments (`/**/` becomes a space, `/*!50000 ... */` keeps its
content; a second variant removes them, for `UN/**/ION`) and runs of horizontal
whitespace. Case is not folded here: every signature is matched caselessly.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote_to_bytes

ROUNDS = 4  # decoding rounds: triple encoding plus one round to see nothing changes
_PCT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_ESCAPE = re.compile(r"\\(?:u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([rnt]))")
_CONTROL = {"r": "\r", "n": "\n", "t": "\t"}
# Overlong UTF-8 forms of '.', '/' and '\' that lenient decoders accept.
_OVERLONG = (
    (b"\xc0\xae", b"."),
    (b"\xc0\xaf", b"/"),
    (b"\xc1\x9c", b"\\"),
    (b"\xc1\x81", b"\\"),
    (b"\xe0\x80\xae", b"."),
    (b"\xe0\x80\xaf", b"/"),
    (b"\xf0\x80\x80\xae", b"."),
    (b"\xf0\x80\x80\xaf", b"/"),
)
_INVISIBLE: dict[int, str | None] = dict.fromkeys(
    map(ord, "\x00\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e")
)
_INVISIBLE.update({0x2215: "/", 0x2044: "/", 0x29F8: "/", 0x2216: "\\", 0x29F9: "\\"})
_DOT_SEGMENTS = re.compile(r"(?<=[/\\])(?:\.[/\\])+")
_HSPACE = re.compile(r"[^\S\r\n]+")


def needs_normalising(text: str) -> bool:
    """A cheap test: False for the plain values that have nothing to undo."""
    if not text.isascii():
        return True
    return (
        "%" in text
        or "&" in text
        or "\\" in text
        or "/*" in text
        or "\x00" in text
        or "/./" in text
    )


def normalise(text: str) -> tuple[str, ...]:
    """The variants to match: the value itself first, then its decoded forms (deduplicated)."""
    if not needs_normalising(text) and "+" not in text:
        return (text,)
    decoded = decode(text, comments=" ")
    variants = [text]
    if decoded != text:
        variants.append(decoded)
    if "/*" in text or "/*" in decoded or "%2a" in text.lower():
        joined = decode(text, comments="")
        if joined not in variants:
            variants.append(joined)
    if "+" in decoded and " " not in text:
        # In a query string '+' is a space ("1'+OR+1=1"); elsewhere it is a plus.
        spaced = decoded.replace("+", " ")
        if spaced not in variants:
            variants.append(spaced)
    return tuple(variants)


def decode(text: str, comments: str = " ") -> str:
    """The fully decoded form of text (see the module docstring for what is undone);
    SQL block comments become `comments`."""
    s = text
    for _ in range(ROUNDS):
        before = s
        if "%" in s:
            s = _percent(s)
        if "&" in s:
            s = html.unescape(s)
        if "\\" in s:
            s = _ESCAPE.sub(_unescape, s)
        if s == before:
            break
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s).translate(_INVISIBLE)
    elif "\x00" in s:
        s = s.replace("\x00", "")
    if "/*" in s:
        s = strip_sql_comments(s, comments)
    if "/." in s or "\\." in s:
        s = _DOT_SEGMENTS.sub("", s)
    return _HSPACE.sub(" ", s)


def strip_sql_comments(text: str, replacement: str = " ") -> str:
    """SQL block comments replaced (by a space: how SQL reads them); MySQL's executable
    `/*!NNNNN ... */` keep their content."""
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("/*", pos)
        if start < 0:
            break
        end = text.find("*/", start + 2)
        if end < 0:
            break
        out.append(text[pos:start])
        body = text[start + 2 : end]
        if body.startswith("!"):
            out.append(" " + body[1:].lstrip("0123456789") + " ")
        else:
            out.append(replacement)
        pos = end + 2
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _percent(s: str) -> str:
    if "%u" in s or "%U" in s:
        s = _PCT_U.sub(lambda m: chr(int(m.group(1), 16)), s)
    raw = unquote_to_bytes(s.encode("utf-8", "surrogatepass"))
    if b"\xc0" in raw or b"\xc1" in raw or b"\xe0\x80" in raw or b"\xf0\x80" in raw:
        for overlong, plain in _OVERLONG:
            raw = raw.replace(overlong, plain)
    return raw.decode("utf-8", "replace")


def _unescape(m: re.Match[str]) -> str:
    code = m.group(1) or m.group(2) or m.group(3)
    if code is None:
        return _CONTROL[m.group(4)]
    point = int(code, 16)
    return chr(point) if point <= 0x10FFFF else m.group(0)
