"""The partial and hash masking styles on one text (redact needs none: it is one constant)."""

from __future__ import annotations

import functools
import string
from collections.abc import Callable

from guardrail_authz.keyed_hmac import hmac_sha256

_MASKABLE = (string.ascii_letters + string.digits + "*").encode("ascii")
_TO_STAR = bytes.maketrans(_MASKABLE, b"*" * len(_MASKABLE))


def mask_hash(key: bytes, text: str) -> str:
    """The hash style: "hmac:" + the first 16 hex digits of HMAC-SHA256(key, text in UTF-8)."""
    digest = _KEYED.get(key)
    if digest is None:
        if len(_KEYED) >= 16:  # keys come from configuration: a few at most; never unbounded
            _KEYED.clear()
        digest = _KEYED[key] = hmac_sha256(key)
    return "hmac:" + digest(text.encode("utf-8", "surrogatepass"))[:16]


_KEYED: dict[bytes, Callable[[bytes], str]] = {}  # the keyed HMAC of each key seen


def partial(text: str, keep: int) -> str:
    """Replace letters and digits with '*' except the last `keep` of them, never more than half
    (a 4-digit PIN keeps 2); other characters (spaces, dashes, '@') stay. A '*' counts as a
    masked letter, so masking the output again changes nothing."""
    return _partial(keep, text)


def keeping(keep: int) -> Callable[[str], str]:
    """The partial style with `keep` bound: a rule calls it once per value, with no frame of
    its own around partial's."""
    return functools.partial(_partial, keep)


def _partial(keep: int, text: str) -> str:
    if not text.isascii():
        return _partial_unicode(text, keep)
    # As bytes: a byte table translates in C (str.translate with a dict looks up each char).
    starred = text.encode("ascii").translate(_TO_STAR)
    n = starred.count(42)  # 42: '*', what every maskable became
    k = keep if n >= 2 * keep else n // 2
    if not k:
        return starred.decode("ascii")
    rest = text[-k:]
    if rest.isalnum():  # the usual end (digits, letters): the rest is the last k characters
        return starred[:-k].decode("ascii") + rest
    cut = len(starred.rsplit(b"*", k)[0])  # the k-th maskable from the end starts the rest
    return starred[:cut].decode("ascii") + text[cut:]


def _partial_unicode(text: str, keep: int) -> str:
    n = sum(1 for ch in text if ch.isalnum() or ch == "*")
    cut = n - min(keep, n // 2)
    out: list[str] = []
    for ch in text:
        if ch.isalnum() or ch == "*":
            out.append("*" if cut > 0 else ch)
            cut -= 1
        else:
            out.append(ch)
    return "".join(out)
