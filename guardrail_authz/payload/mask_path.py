"""The JSON side of masking: documents loaded and written back with numbers exactly as they
were, paths (a JSONPath subset: $, .name, ['name'], [0], [*], ..name) and the walks that find
the values to mask."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from guardrail_authz.payload.detect.base import Action, Rule
from guardrail_authz.payload.detect.matcher import Matcher

MAX_STEPS = 32
_NAME = re.compile(r"[A-Za-z_\u0080-\U0010ffff][\w\u0080-\U0010ffff-]*")
_INDEX = re.compile(r"-?(?:0|[1-9][0-9]{0,8})")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}  # fmt: skip

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ASCII_ESCAPE = re.compile(rb"\\u00[2-7][0-9A-Fa-f]")
_PLACEHOLDER = re.compile(b'"(\x7f[0-9a-f]{16}):([0-9]+)\x7f"')  # a number to restore
# Where a number may read back differently from how it is written, or orjson read it as a
# float: an exponent, a fraction ending in 0 (1.10, not 1.0) or below 0.0001, 16 digits or
# more with a point (17 digits and points in a row: integers of 17 to 19 digits take the
# slower parse too, and the check runs a fifth faster than with the point placed), an
# integer beyond 64 bits. A number starts after '[', ':', ',' or white space; strings are
# searched too, where a match only costs the slower parse.
_N = r"[\[:,\s]-?"
_INEXACT = (
    _N + r"[0-9]+(?:\.[0-9]+)?[eE]",
    _N + r"[0-9]+\.[0-9]+0[^0-9]",
    _N + r"0\.0000",
    _N + r"[0-9]{20}|[\[:,\s]-[0-9]{19}",
    _N + r"[0-9.]{17}",
)
FIELD = "|"  # after the mark: what follows is a value a field rule masked
_NOT_ASCII = re.compile("[^\x00-\x7e]")  # what json.dumps(ensure_ascii=True) escapes
Slot = tuple[Any, Any]  # (container, key): where a value sits, so that it can be replaced


class PathError(ValueError):
    """A path that is not in the supported syntax; the message names the offset."""


@dataclass(frozen=True, slots=True)
class Step:
    """One segment: a member name, an array index or a wildcard, as a child or descendant."""

    kind: str  # "name" | "index" | "wild"
    name: str = ""
    index: int = 0
    descendant: bool = False


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path; `select` finds where its values sit in a document."""

    text: str
    steps: tuple[Step, ...]
    hints: tuple[bytes, ...] = ()  # member names the path needs, as they must appear in a body

    def select(self, holder: list[Any]) -> list[Slot]:
        """The (container, key) of every value the path selects, each once; `holder` is a
        one-item list holding the document (so `$` is (holder, 0)). Missing members and
        out-of-range indexes select nothing."""
        slots: list[Slot] = [(holder, 0)]
        for step in self.steps:
            nxt: list[Slot] = []
            if step.kind == "name" and not step.descendant:  # the common step, without a call
                name = step.name
                for container, key in slots:
                    node = container[key]
                    if type(node) is dict and name in node:
                        nxt.append((node, name))
            else:
                for container, key in slots:
                    if step.descendant:
                        _descend(container[key], step, nxt)
                    else:
                        _child(container[key], step, nxt)
            # Distinct parents have distinct children; only a descendant step can repeat one.
            slots = _unique(nxt) if step.descendant else nxt
        return slots


def parse_path(text: str) -> JsonPath:
    """Parse `$.a.b`, `$['a b']`, `$.items[0]`, `$.items[-1]`, `$[*]`, `$.*`, `$..x`; raise
    PathError naming the offset of anything else (filters, slices and unions included)."""
    if not text.startswith("$"):
        raise PathError("a path starts with '$' (the document), e.g. $.customer.email")
    steps: list[Step] = []
    pos = 1
    while pos < len(text):
        descendant = text.startswith("..", pos)
        if descendant or text[pos] == ".":
            pos += 2 if descendant else 1
            if pos < len(text) and text[pos] == "[" and descendant:
                step, pos = _bracket(text, pos)
            elif text.startswith("*", pos):
                step, pos = Step("wild"), pos + 1
            else:
                m = _NAME.match(text, pos)
                if m is None:
                    raise PathError(f"expected a member name or '*' at offset {pos}")
                step, pos = Step("name", m.group()), m.end()
        elif text[pos] == "[":
            step, pos = _bracket(text, pos)
        else:
            raise PathError(f"expected '.', '..' or '[' at offset {pos}, got {text[pos]!r}")
        steps.append(Step(step.kind, step.name, step.index, descendant))
        if len(steps) > MAX_STEPS:
            raise PathError(f"a path has at most {MAX_STEPS} segments")
    names = {s.name for s in steps if s.kind == "name" and _PLAIN_NAME.fullmatch(s.name)}
    return JsonPath(text, tuple(steps), tuple(f'"{name}"'.encode() for name in sorted(names)))


def hides_ascii(raw: bytes) -> bool:
    """True when a JSON text may spell an ASCII character as an escape (\\u0040 for '@'):
    then looking for a name or a pattern in the raw bytes proves nothing."""
    return b"\\" in raw and _ASCII_ESCAPE.search(raw) is not None


def _bracket(text: str, pos: int) -> tuple[Step, int]:
    """A `[...]` selector starting at `pos` (the '['); returns the step and the offset after ']'."""
    start, pos = pos, pos + 1
    if text.startswith("*]", pos):
        return Step("wild"), pos + 2
    if pos < len(text) and text[pos] in "'\"":
        name, pos = _quoted(text, pos)
        step = Step("name", name)
    else:
        m = _INDEX.match(text, pos)
        if m is None:
            what = "filters" if text.startswith("?", pos) else "this selector"
            raise PathError(f"{what} at offset {start} not supported: use a name, index or *")
        step, pos = Step("index", index=int(m.group())), m.end()
    if not text.startswith("]", pos):
        raise PathError(f"expected ']' at offset {pos} (slices and unions are not supported)")
    return step, pos + 1


def _quoted(text: str, start: int) -> tuple[str, int]:
    quote, pos = text[start], start + 1
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(out), pos + 1
        if ch == "\\":
            escaped = text[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                raise PathError(f"unknown escape at offset {pos}")
            out.append(_ESCAPES[escaped])
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise PathError(f"unterminated quoted name starting at offset {start}")


def _child(node: Any, step: Step, out: list[Slot]) -> None:
    kind = type(node)
    if step.kind == "name":
        if kind is dict and step.name in node:
            out.append((node, step.name))
    elif step.kind == "index":
        if kind is list and -len(node) <= step.index < len(node):
            out.append((node, step.index % len(node)))
    elif kind is dict:
        out.extend((node, key) for key in node)
    elif kind is list:
        out.extend((node, i) for i in range(len(node)))


def _descend(value: Any, step: Step, out: list[Slot]) -> None:
    """Apply a step to the value and every object or array inside it, without recursion."""
    stack = [value]
    pop, push = stack.pop, stack.append
    name = step.name if step.kind == "name" else None
    while stack:
        node = pop()
        if type(node) is dict:
            if name is None:
                _child(node, step, out)
            elif name in node:  # the common `..name`, without a call per object
                out.append((node, name))
            items: Any = node.values()
        elif type(node) is list:
            if name is None:
                _child(node, step, out)
            items = node
        else:
            continue
        for v in items:
            if type(v) is dict or type(v) is list:
                push(v)


def _unique(slots: list[Slot]) -> list[Slot]:
    seen: set[tuple[int, Any]] = set()
    out: list[Slot] = []
    for container, key in slots:
        mark = (id(container), key)
        if mark not in seen:
            seen.add(mark)
            out.append((container, key))
    return out


def leaves(container: Any, key: Any) -> Iterator[Slot]:
    """The slot itself when it holds a string or number, else every string and number inside
    it (booleans and null are never masked)."""
    stack: list[Slot] = [(container, key)]
    while stack:
        c, k = stack.pop()
        value = c[k]
        kind = type(value)
        if kind is dict:
            stack.extend((value, sub) for sub in reversed(value))
        elif kind is list:
            stack.extend((value, i) for i in range(len(value) - 1, -1, -1))
        elif kind is not bool and value is not None:
            yield c, k


@dataclass(slots=True)
class Document:
    """A parsed body: `holder[0]` is the document (a one-item list, so the root has a slot)
    and `raw` the text of the numbers a float would have changed. `mark` starts every
    placeholder and every value a field rule masked: a DEL (which neither orjson nor
    json.dumps(ensure_ascii=False) escapes, so the mark reads the same in the written text)
    and a random nonce no body can predict."""

    holder: list[Any]
    mark: str = field(default_factory=lambda: "\x7f" + secrets.token_hex(8))
    raw: list[str] = field(default_factory=list)


class _RawNumber(str):
    """A JSON number whose text a float would change or orjson would write differently (1.10,
    1e5, 1e400, 1e+16, 20 digits): kept as written, and serialized as a placeholder string
    that finish() swaps back."""

    text: str


def load_json(body: bytes) -> Document:
    """Parse JSON keeping every number's value exact; raises ValueError (malformed JSON,
    invalid UTF-8, NaN or Infinity, huge integers) or RecursionError (nesting deeper than
    Python recurses). orjson parses it (twice as fast) when no number in it could read back
    differently from how it is written; json, with a hook per number with a fraction or
    exponent, parses the rest and judges what orjson refuses."""
    doc = Document([])
    if body.lstrip()[:1] in (b"{", b"[") and not _inexact().matches_any(body, _EVERY):
        try:
            doc.holder.append(orjson.loads(body))
        except orjson.JSONDecodeError:
            pass  # json says what is wrong, or reads it: lone surrogates, 1,024+ levels
        else:
            return doc

    def parse_float(number: str) -> Any:
        value = float(number)
        # repr() and orjson write the same digits, but exponents differently (1e+16, 1e16)
        if repr(value) == number and "e" not in number:
            return value
        raw = _RawNumber(f"{doc.mark}:{len(doc.raw)}\x7f")
        raw.text = number
        doc.raw.append(number)
        return raw

    text = body.decode("utf-8")
    doc.holder.append(json.loads(text, parse_float=parse_float, parse_constant=_not_json))
    return doc


_EVERY = frozenset(range(len(_INEXACT)))


def prepare() -> None:
    """Compile the number check load_json runs (~40 ms, once per process) now, while a policy
    with a mask section loads, rather than on the first body."""
    _inexact()


@lru_cache(maxsize=1)
def _inexact() -> Matcher:
    rules = [Rule(f"inexact{i}", "", p, Action.HIT, False) for i, p in enumerate(_INEXACT)]
    return Matcher(rules, joined=False)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def number_text(value: Any) -> str:
    """A number leaf as text, exactly as the body wrote it."""
    if isinstance(value, _RawNumber):
        return value.text
    return repr(value) if type(value) is float else str(value)


def dump(doc: Document) -> tuple[bytes, bool]:
    """The document as compact JSON in UTF-8 (no spaces, keys in their original order,
    non-ASCII as it is), placeholders and marks still in, and whether it holds lone
    surrogates (encoded as they are: 'surrogatepass'). Raises RecursionError when it nests
    deeper than Python recurses. orjson writes it about 15 times faster than json.dumps, in
    the same form; json.dumps serves what orjson refuses (lone surrogates, integers beyond
    64 bits, more than 254 levels)."""
    try:
        return orjson.dumps(doc.holder[0]), False
    except orjson.JSONEncodeError:
        text = json.dumps(
            doc.holder[0], ensure_ascii=False, separators=(",", ":"), check_circular=False,
            allow_nan=False,
        )  # fmt: skip
    try:
        return text.encode("utf-8"), False
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass"), True


def finish(doc: Document, data: bytes, surrogates: bool) -> bytes:
    """What dump wrote (and the detectors masked), as the body to send: field marks dropped,
    numbers restored as the body wrote them; a text still holding lone surrogates is
    written ASCII-escaped instead, as json.dumps(ensure_ascii=True) would."""
    mark = doc.mark.encode("ascii")
    data = data.replace(mark + FIELD.encode("ascii"), b"")
    if doc.raw:

        def restore(m: re.Match[bytes]) -> bytes:
            return doc.raw[int(m.group(2))].encode("ascii") if m.group(1) == mark else m.group()

        data = _PLACEHOLDER.sub(restore, data)
    if not surrogates:
        return data
    text = data.decode("utf-8", "surrogatepass")
    try:
        return text.encode("utf-8")  # masking took them out
    except UnicodeEncodeError:
        return _NOT_ASCII.sub(_escape, text).encode("ascii")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
