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
import re
from collections import defaultdict
from collections.abc import Callable, Iterable

from guardrail_authz.payload.mask_detect import Finder

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
    """The string values a built-in trigger fired in, located in the text (`values[i]`, read
    out and unescaped only when asked for), and `flagged` (detector index -> value indexes)
    for Scanner.find. Keys and values starting with `mark` (placeholders, values a field rule
    masked) are left out. The text must hold no escaped quote (then a quote before or after
    an offset inside a string delimits it)."""

    __slots__ = ("_data", "_escaped", "_new", "_spans", "_values", "flagged")

    def __init__(self, data: bytes, mark: bytes, hits: list[int]) -> None:
        """`hits` as Scanner.hits gives them for `data`."""
        self._data = data
        self.flagged: dict[int, set[int]] = defaultdict(set)
        self._spans: list[tuple[int, int, bool]] = []  # per value: start, end, escaped
        self._escaped: set[int] = set()
        self._new: list[tuple[int, int, bytes]] = []
        spans, flagged = self._spans, self.flagged
        rfind, find, at, count = data.rfind, data.find, data.startswith, data.count
        hits.sort()  # by end offset: the hits inside one string come one after another
        backslash = b"\\" in data  # else no string in it is escaped
        pos = quotes = 0  # quotes counted before pos (odd: pos is inside a string)
        low = high = value = -1  # the piece of the last hit (low..high) and its value index
        for packed in hits:
            last = (packed >> 16) - 1  # a byte of the match
            if not low <= last < high:  # another piece than the last hit's
                quotes += count(b'"', pos, last)
                pos = last
                low, high, value = rfind(b'"', 0, last) + 1, find(b'"', last), -1
                if high < 0:
                    high = len(data)
                elif quotes & 1 and not at(mark, low) and not at(b":", high + 1):
                    value = len(spans)  # a string value (not a key, not marked)
                    escaped = backslash and data.find(b"\\", low, high) >= 0
                    if escaped:
                        self._escaped.add(value)
                    spans.append((low, high, escaped))
            if value >= 0:
                flagged[packed & 0xFFFF].add(value)
        self._values = [""] * len(spans)  # read out so far ("": not yet)

    @property
    def values(self) -> list[str]:
        """Every value, read out."""
        return self.texts(range(len(self._spans)))

    def texts(self, indexes: Iterable[int]) -> list[str]:
        """The values, with those of `indexes` read out and unescaped (others may be "")."""
        values, spans, data = self._values, self._spans, self._data
        for i in indexes:
            if not values[i]:
                start, end, escaped = spans[i]
                text = data[start:end].decode("utf-8", _ERRORS)
                values[i] = _unescaped(text) if escaped else text
        return values

    def alone(self, skip: frozenset[int]) -> tuple[dict[int, list[int]], dict[int, set[int]]]:
        """`flagged` without the detectors in `skip`, split in two: per detector, the values
        (sorted) no other detector's trigger fired in and that hold no escape, and `flagged`
        for the others."""
        shared: set[int] = set(self._escaped)
        seen: set[int] = set()
        chosen = [(d, which) for d, which in self.flagged.items() if d not in skip]
        for _, which in chosen:
            shared |= seen & which
            seen |= which
        if not shared:
            return {d: sorted(which) for d, which in chosen}, {}
        alone = {d: sorted(which - shared) for d, which in chosen}
        return {d: w for d, w in alone.items() if w}, {d: which & shared for d, which in chosen}

    def mask_joined(
        self,
        which: list[int],
        find: Finder,
        styled: Callable[[str], str],
        every: tuple[re.Pattern[str], str] | None = None,
    ) -> int | None:
        """Mask what `find` finds in the values `which` (none escaped), styled, in one pass
        over them joined by NUL (as Scanner.find runs a built-in), read out of the text and
        written back in one piece each way; return how many matches changed. None (nothing
        masked) when the matches overlap (Scanner.find merges them) or the masked text splits
        into more pieces than there are values (a NUL in a match: no built-in matches one).
        Only for values no other detector looks at. `every` (pattern, text): `find` gives
        every match of the pattern and nothing more, and each becomes that text (redact), so
        the regex engine replaces them all with no call per match."""
        data, spans = self._data, self._spans
        raw = b"\0".join([data[spans[v][0] : spans[v][1]] for v in which])
        joined = raw.decode("utf-8", _ERRORS)
        if every is not None:
            pattern, text = every
            masked, changed = pattern.subn(text.replace("\\", r"\\"), joined)
            return changed if not changed or self._write(which, raw, masked) else None
        parts: list[str] = []
        pos = changed = last = 0
        for start, end in find(joined):
            if start < last:  # overlapping matches (e-mail): Scanner.find merges them
                return None
            last = end
            piece = joined[start:end]
            new = styled(piece)
            if new != piece:
                parts += (joined[pos:start], new)
                pos = end
                changed += 1
        if not changed:
            return 0
        parts.append(joined[pos:])
        return changed if self._write(which, raw, "".join(parts)) else None

    def _write(self, which: list[int], raw: bytes, masked: str) -> bool:
        """Note the values of `raw` (as mask_joined read them) that `masked` changed; False
        (nothing noted) when it does not split into as many values."""
        news = masked.encode("utf-8", _ERRORS).split(b"\0")
        if len(news) != len(which):
            return False
        out, spans = self._new, self._spans
        for v, old, new_bytes in zip(which, raw.split(b"\0"), news, strict=True):
            if new_bytes != old:
                start, end, _ = spans[v]
                out.append((start, end, new_bytes))
        return True

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
