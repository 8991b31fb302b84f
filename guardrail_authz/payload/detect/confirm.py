"""Closer looks at a value that a trigger pattern picked: libinjection, Log4j lookups, shell
quoting, binary stream headers. Each returns a signature id (never the payload) or None."""

from __future__ import annotations

import base64
import binascii
import re
import zlib

import libinjection

# libinjection fingerprints (one letter per token: s string, n name, 1 number, & logic
# operator, o operator, E statement keyword, B group/order by or having, k keyword, f
# function, c comment, ; stacked query, U union, v variable) that prose and code snippets
# produce as well as payloads:
# - a statement keyword or function call first, without a string, comment, stacked query,
#   union or variable ("SELECT id FROM t WHERE a = 1" is Enknk, "sqrt(16) = 4" is f(1)o);
# - words, quoted words and numbers joined by AND/OR or SQL keywords, without an operator,
#   comment or bracket ("choose 'red' or 'blue'" is s&s, "'Having' is a verb" sBs,
#   "3 < 5 and 5 > 2" 1&1), unless an equality makes it a tautology ("1 OR 1=1");
# - a number and a comment ("2024 -- what a year" is 1c).
# Payloads of these shapes are left to the own signatures (tautology, time-based, ...).
_CODE_LIKE = re.compile(r"[Ef][^sc;Uv]*$")
_WORDS_ONLY = re.compile(r"[sn1&kBET]+$")
_NUMBER_COMMENT = "1c"
_DASH = re.compile(r"\s--(?=\s+[^\W\d_]{2,}\s+[^\W\d_])")
# Style attributes are normal in rich text; only the ones that run code are XSS.
_STYLE_ATTR = re.compile(r"""\bstyle\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*)""", re.IGNORECASE)
_STYLE_CODE = re.compile(r"expression|javascript|behavior|binding|url\s*\(|@import|\\", re.I)
_LOOKUP = re.compile(r"\$\{([^${}]*)\}")
MAX_LOOKUP_ROUNDS = 16


def _clean(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def sqli(text: str) -> str | None:
    """libinjection's SQL verdict on text (and its '+'-as-space form) as a signature."""
    for candidate in _sql_forms(text):
        fingerprint = _fingerprint(candidate)
        if fingerprint is not None and "c" in fingerprint and _DASH.search(candidate):
            # A "--" followed by words is a dash in a sentence, not a comment: ask again
            # without it ("'this' or 'that' -- which one?").
            fingerprint = _fingerprint(_DASH.sub(" ", candidate))
        if fingerprint is not None:
            return f"libinjection:{fingerprint}"
    return None


def _fingerprint(text: str) -> str | None:
    """libinjection's fingerprint when it says SQL injection and the shape is not prose's."""
    try:
        result = libinjection.is_sql_injection(text)
    except UnicodeError:
        result = libinjection.is_sql_injection(_clean(text))
    if not result["is_sqli"]:
        return None
    fingerprint = str(result["fingerprint"])
    if _CODE_LIKE.match(fingerprint) or fingerprint == _NUMBER_COMMENT:
        return None
    if _WORDS_ONLY.match(fingerprint) and "=" not in text:
        return None
    return fingerprint


def _sql_forms(text: str) -> tuple[str, ...]:
    if "+" in text and " " not in text:
        return (text, text.replace("+", " "))
    return (text,)


def xss(text: str) -> str | None:
    """libinjection's HTML verdict on text as a signature; harmless style attributes are not."""
    if not _xss(text):
        return None
    if "style" in text.lower():
        harmless = _STYLE_ATTR.sub(_drop_harmless_style, text)
        if harmless != text and not _xss(harmless):
            return None
    return "libinjection:xss"


def _xss(text: str) -> bool:
    try:
        return bool(libinjection.is_xss(text)["is_xss"])
    except UnicodeError:
        return bool(libinjection.is_xss(_clean(text))["is_xss"])


def _drop_harmless_style(m: re.Match[str]) -> str:
    return m.group(0) if _STYLE_CODE.search(m.group(0)) else ""


def jndi_lookup(text: str) -> str | None:
    """Resolve nested Log4j lookups (`${lower:j}`, `${::-n}`, `${env:X:-d}`) innermost first;
    a `${jndi:` that appears on the way is Log4Shell."""
    found: list[bool] = []

    def resolve(m: re.Match[str]) -> str:
        content = m.group(1)
        if content.replace(" ", "").lower().startswith("jndi:"):
            found.append(True)
            return ""
        if ":-" in content:
            return content.split(":-", 1)[1]
        prefix, _, rest = content.partition(":")
        prefix = prefix.strip().lower()
        if prefix in ("lower", "upper"):
            return rest
        if prefix == "date":
            return rest.strip().strip("'")
        return ""  # any other lookup resolves to text an attacker does not control

    s = text
    for _ in range(MAX_LOOKUP_ROUNDS):
        resolved = _LOOKUP.sub(resolve, s)
        if found:
            return "log4shell.jndi-obfuscated"
        if resolved == s:
            break
        s = resolved
    return None


def dequote_shell(text: str) -> str:
    """text with the shell's quoting removed: c'a't, w"h"oami, c\\at and w$@hoami all read cat."""
    return text.replace("'", "").replace('"', "").replace("\\", "").replace("$@", "")


_MARSHAL_TYPES = frozenset(b'o:Iu[{"cmSUlCe')
_B64_RUN = re.compile(r"(?:H4sI|Tzo|Qzo|YTo)[A-Za-z0-9+/]*={0,2}")
_PHP_OBJECT = re.compile(rb"(?:[OC]:\+?\d+:\"[\w\\]+\":\d+:\{|a:\d+:\{(?:i:\d+;|s:\d+:\"))")
MAX_INFLATE = 4096  # bytes of a gzip stream inflated to look for a header: a bomb costs nothing


def base64_object(text: str) -> str | None:
    """A serialized object inside a base64 run: gzip (`H4sI`) of a Java, pickle or Marshal
    stream, or a PHP serialized object or array (`Tzo`, `Qzo`, `YTo`)."""
    for m in _B64_RUN.finditer(text):
        run = m.group(0)[:8192]
        run = run[: len(run) - len(run) % 4]
        try:
            data = base64.b64decode(run)
        except (binascii.Error, ValueError):
            continue
        found = gzip_stream(data) if run.startswith("H4sI") else None
        if found is None and _PHP_OBJECT.match(data):
            found = "deserialization.php"
        if found is not None:
            return found
    return None


def gzip_stream(data: bytes) -> str | None:
    """A serialized object stream at the start of a gzip member (only its start is inflated)."""
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_INFLATE)
    except zlib.error:
        return None
    if head.startswith(b"\xac\xed\x00\x05"):
        return "deserialization.java"
    return binary_stream(head)


def binary_stream(data: bytes) -> str | None:
    """A serialized object stream by its header: Python pickle (protocol 2-5, ending in
    STOP) or Ruby Marshal 4.8. Java and .NET headers are hyperscan patterns."""
    if len(data) >= 3 and data[0] == 0x80 and 2 <= data[1] <= 5 and data.rstrip().endswith(b"."):
        return "deserialization.pickle"
    if len(data) >= 3 and data[:2] == b"\x04\x08" and data[2] in _MARSHAL_TYPES:
        return "deserialization.ruby"
    if data[:3] == b"\x1f\x8b\x08":
        return gzip_stream(data)
    return None
