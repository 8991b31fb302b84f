"""The string values of a written document, found in its text: the detectors read them straight
out of the compact JSON that `dump` writes and mask them there, so that no walk of the parsed
document is needed to find them and no second serialization to write them back.

In that text every '"' outside a string delimits one, and inside one it is escaped (\\"):
split on '"', the odd pieces are the strings (keys and values) as JSON escapes them, and a
string is a key when the piece after it starts with ':' (the text has no spaces).

Two ways to the values, with the same interface (`values`, `replace`, `result`):
HitValues takes only the strings a built-in trigger fired in, located from the trigger's
offset in the text (no piece for the others); SplitValues splits the whole text, for custom
detectors (which read every value), escaped quotes and trigger floods."""

from __future__ import annotations

import json
from collections import defaultdict

from guardrail_authz.payload.detect.matcher import sweep

_ERRORS = "surrogatepass"  # lone surrogates, which JSON escapes can carry, survive the trip


def _unescaped(content: str) -> str:
    """A string's content as written between its quotes, escapes and all, as the string it
    spells."""
    text: str = json.loads(f'"{content}"')
    return text


def _encoded(new: str, escaped: bool) -> str:
    """A masked value as a token's content. Masking only removes characters or writes
    letters, digits, '*', '[', ']' and ':': a value that needed no escape needs none after."""
    return json.dumps(new, ensure_ascii=False)[1:-1] if escaped else new


class HitValues:
    """The string values a built-in trigger fired in: `values[i]` unescaped, and `flagged`
    (detector index -> value indexes) for Scanner.find. Keys and values starting with `mark`
    (placeholders, values a field rule masked) are left out. The text must hold no escaped
    quote (then a quote before or after an offset inside a string delimits it)."""

    __slots__ = ("_data", "_new", "_spans", "flagged", "values")

    def __init__(self, data: bytes, mark: bytes, hits: list[int]) -> None:
        """`hits` as Scanner.hits gives them for `data`."""
        self._data = data
        self.values: list[str] = []
        self.flagged: dict[int, set[int]] = defaultdict(set)
        self._spans: list[tuple[int, int, bool]] = []  # per value: start, end, escaped
        self._new: list[tuple[int, int, bytes]] = []
        values, spans, flagged = self.values, self._spans, self.flagged
        rfind, find, at = data.rfind, data.find, data.startswith
        current = value = -1  # the piece of the last hit, and its value index (-1: none)
        # By end offset, the hits inside one string come one after another.
        for piece, packed in sweep(data, hits, b'"'):
            if piece != current:
                current, value = piece, -1
                if piece & 1:  # inside a string (else between strings: a number, say)
                    last = (packed >> 16) - 1  # a byte of the match
                    start = rfind(b'"', 0, last) + 1
                    end = find(b'"', last) if not at(mark, start) else -1
                    if end >= 0 and not at(b":", end + 1):  # a value, not a key
                        value = len(values)
                        token = data[start:end]
                        escaped = b"\\" in token
                        text = token.decode("utf-8", _ERRORS)
                        values.append(_unescaped(text) if escaped else text)
                        spans.append((start, end, escaped))
            if value >= 0:
                flagged[packed & 0xFFFF].add(value)

    def replace(self, index: int, new: str) -> None:
        """Write `new` in place of `values[index]`."""
        start, end, escaped = self._spans[index]
        self._new.append((start, end, _encoded(new, escaped).encode("utf-8", _ERRORS)))

    def result(self) -> bytes:
        """The text with the replacements made."""
        if not self._new:
            return self._data
        parts: list[bytes] = []
        pos = 0
        for start, end, new in sorted(self._new):
            parts += (self._data[pos:start], new)
            pos = end
        parts.append(self._data[pos:])
        return b"".join(parts)


class SplitValues:
    """Every string of the text: `values[i]` is the i-th (a key or a value), unescaped;
    `keep` turns down keys and values starting with `mark`."""

    __slots__ = ("_changed", "_data", "_mark", "_pieces", "_raw", "values")

    def __init__(self, data: bytes, mark: str) -> None:
        self._data = data
        self._pieces = pieces = split(data.decode("utf-8", _ERRORS))
        self._raw = raw = pieces[1::2]
        self._mark = mark
        self._changed = False
        self.values = raw
        if any("\\" in piece for piece in raw):  # escaped strings are scanned as they read
            self.values = [_unescaped(s) if "\\" in s else s for s in raw]

    def keep(self, index: int) -> bool:
        """False for a key and for a value starting with the mark."""
        key = self._pieces[2 * index + 2].startswith(":")
        return not key and not self._raw[index].startswith(self._mark)

    def replace(self, index: int, new: str) -> None:
        """Write `new` in place of `values[index]`."""
        escaped = self.values[index] is not self._raw[index]
        self._pieces[2 * index + 1] = _encoded(new, escaped)
        self._changed = True

    def result(self) -> bytes:
        """The text with the replacements made."""
        if not self._changed:
            return self._data
        return '"'.join(self._pieces).encode("utf-8", _ERRORS)


def split(text: str) -> list[str]:
    """`text` split at the quotes that delimit its strings: even pieces lie between strings,
    odd pieces are the strings' contents, escapes as written."""
    pieces = text.split('"')
    if '\\"' not in text:
        return pieces
    merged = [pieces[0]]
    inside = False  # whether merged[-1] is a string's content
    for piece in pieces[1:]:
        last = merged[-1]
        if inside and (len(last) - len(last.rstrip("\\"))) % 2:  # that quote was escaped
            merged[-1] = f'{last}"{piece}'
        else:
            merged.append(piece)
            inside = not inside
    return merged
