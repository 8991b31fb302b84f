"""Request bodies: parse the buffered bytes once, by media type, within hard limits."""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import unquote

from guardrail_authz.engine.request import BadRequestError
from guardrail_authz.payload import body_media
from guardrail_authz.payload.body_media import ASCII_SAFE, CHARSETS, TCHARS, FilePart, decode

__all__ = [
    "BodyLimits", "FilePart", "ParsedBody", "inspectable", "json_path", "keys", "parse_body",
    "strings",
]  # fmt: skip

# json.loads recurses once per level; this keeps it far below Python's recursion limit.
MAX_JSON_DEPTH = 256
_ALLOWED_PATTERN = re.compile(rf"(?:{TCHARS}|\*)/(?:{TCHARS}|\*)")
_TEXT_TYPES = frozenset({"application/xml", "application/graphql", "application/javascript"})
# JSON pre-scan tables: keep only the bytes that shape a document, brackets of one kind.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},:')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_CURLY_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_ESCAPED_QUOTE_OR_BACKSLASH = re.compile(rb'\\[\\"]')  # left to right, as JSON pairs them
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTAINERS = frozenset({dict, list})
_KEY_MARKS = re.compile(r"[$%\r\n]|[^\x00-\x7f]")  # what a key detector needs to fire
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 and -1 as signed bytes
_LONG_BRACKETS = 4096


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """What a route accepts: size, JSON shape and media types ("type/*" allowed, () = any)."""

    max_bytes: int = 1_048_576
    max_depth: int = 64
    max_elements: int = 100_000
    content_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_elements < 1:
            raise ValueError("max_bytes must be >= 0 and max_elements >= 1")
        if not 1 <= self.max_depth <= MAX_JSON_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {MAX_JSON_DEPTH}")
        for pattern in self.content_types:
            if pattern != pattern.lower() or not _ALLOWED_PATTERN.fullmatch(pattern):
                raise ValueError(f"content type {pattern!r} is not a lower-case type/subtype")


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A body parsed according to its media type; only the fields of its kind are filled."""

    media_type: str
    charset: str
    kind: str
    raw: bytes
    json: object = None
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    files: tuple[FilePart, ...] = ()


def parse_body(
    raw: bytes, content_type: str | None, limits: BodyLimits, *, walk: bool = False
) -> ParsedBody:
    """Parse a request body; raises BadRequestError (4xx) for anything the route must refuse.

    `walk=True` leaves a JSON document's depth and value count to `inspectable(body, limits)`,
    which the caller must call next (it walks the document anyway, so the byte pre-scan that
    bounds them before parsing is skipped); json.loads' own recursion guard still holds."""
    raw = bytes(raw)
    if len(raw) > limits.max_bytes:
        raise BadRequestError(413, "body_too_large", "request body exceeds the route's size limit")
    parsed = body_media.content_type(content_type or "")
    media_type = parsed.media_type
    charset = "utf-8" if parsed.charset is None else parsed.charset
    if not raw:
        return ParsedBody(media_type, charset, "empty", raw)
    if limits.content_types and not _allowed(media_type, limits.content_types):
        msg = "content type is not accepted by this route"
        raise BadRequestError(415, "unsupported_content_type", msg)
    if media_type == "application/json" or media_type.endswith("+json"):
        value, text = _parse_json(raw, charset, None if walk else limits)
        return ParsedBody(media_type, charset, "json", raw, json=value, text=text)
    if media_type == "application/x-www-form-urlencoded":
        text, fields = _parse_form(raw, charset, limits)
        return ParsedBody(media_type, charset, "form", raw, text=text, fields=fields)
    if media_type == "multipart/form-data":
        if parsed.boundary is None:
            raise BadRequestError(400, "malformed_multipart", "multipart body without a boundary")
        fields, files = body_media.parse_multipart(
            raw, parsed.boundary, charset, limits.max_elements
        )
        return ParsedBody(media_type, charset, "multipart", raw, fields=fields, files=files)
    if media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith("+xml"):
        return ParsedBody(media_type, charset, "text", raw, text=decode(raw, charset))
    return ParsedBody(media_type, charset, "binary", raw)


def strings(body: ParsedBody) -> Iterator[tuple[str, str]]:
    """Every (field path, string value) to inspect, depth first in document order."""
    if body.kind == "json":
        yield from _walk(body.json, every_key=False)[0]
    elif body.kind in ("form", "multipart"):
        for name, value in body.fields:
            yield json_path("form", (name,)), value
        for part in body.files:
            yield json_path("file", (part.field, "filename")), part.filename
    elif body.kind == "text":
        yield "body", body.text


def keys(body: ParsedBody) -> Iterator[tuple[str, str]]:
    """Every (path of the containing object, key) for JSON objects and form field names."""
    if body.kind == "json":
        yield from _walk(body.json, every_key=True)[1]
    elif body.kind in ("form", "multipart"):
        for name, _ in body.fields:
            yield "form", name
        for part in body.files:
            yield "file", part.field


def inspectable(
    body: ParsedBody, limits: BodyLimits | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What the detectors look at, in one pass: every (field path, string value) as
    `strings()` gives them, and the (object path, key) of the keys a key detector could fire
    on: those holding `$`, `%`, CR, LF or non-ASCII characters (NoSQL operators and CR/LF
    injection need one of them). Form and multipart field names are all kept. With `limits`
    (a body parsed with `walk=True`), a JSON document deeper or larger than they allow is
    refused here: 400 json_too_deep or json_too_many_elements."""
    if body.kind != "json":
        return list(strings(body)), list(keys(body))
    return _walk(body.json, every_key=False, limits=limits)


def _walk(
    root: object, *, every_key: bool, limits: BodyLimits | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path, string) pairs depth first in document order, and (object path, key) pairs:
    every key, or only those with `$`, `%`, CR, LF or non-ASCII characters; with `limits`,
    their depth and value count are enforced on the way."""
    values: list[tuple[str, str]] = []
    found: list[tuple[str, str]] = []
    seen: dict[str, tuple[str, bool]] = {}  # key -> (path segment, kept as a key?)
    max_depth = limits.max_depth if limits is not None else MAX_JSON_DEPTH
    members = 0  # values inside containers; the document holds 1 + members values

    def walk(node: Any, path: str, depth: int) -> None:
        nonlocal members
        if depth > max_depth:
            raise BadRequestError(400, "json_too_deep", "JSON body is nested too deeply")
        members += len(node)
        if type(node) is dict:
            for key, value in node.items():
                known = seen.get(key)
                if known is None:
                    keep = every_key or _KEY_MARKS.search(key) is not None
                    known = seen[key] = (_segment(key), keep)
                if known[1]:
                    found.append((path, key))
                kind = type(value)
                if kind is str:
                    values.append((path + known[0], value))
                elif kind is dict or kind is list:
                    walk(value, path + known[0], depth + 1)
        else:
            for i, value in enumerate(node):
                kind = type(value)
                if kind is str:
                    values.append((f"{path}[{i}]", value))
                elif kind is dict or kind is list:
                    walk(value, f"{path}[{i}]", depth + 1)

    if type(root) is str:
        values.append(("body", root))
    elif type(root) in _CONTAINERS:
        walk(root, "body", 1)
    if limits is not None and 1 + members > limits.max_elements:
        raise BadRequestError(400, "json_too_many_elements", "JSON body has too many values")
    return values, found


def json_path(base: str, parts: Sequence[str | int]) -> str:
    """Format a field path: body.a.b[0].c, with odd keys quoted as body["odd key"]."""
    return base + "".join(_segment(part) for part in parts)


def _segment(part: str | int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if _IDENTIFIER.fullmatch(part):
        return "." + part
    return "[" + json.dumps(part, ensure_ascii=False) + "]"


def _allowed(media_type: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern in (media_type, "*/*"):
            return True
        if pattern.endswith("/*") and media_type.startswith(pattern[:-1]):
            return True
    return False


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _parse_json(raw: bytes, charset: str, limits: BodyLimits | None) -> tuple[object, str]:
    """Bound depth and size by a linear pre-scan (unless `limits` is None: the caller walks
    the document), then json.loads; never recurses deeply."""
    text = decode(raw, charset)
    scan = raw if CHARSETS[charset] in ASCII_SAFE else text.encode("utf-8")
    backslashes = scan.count(b"\\")
    maybe_more = _prescan(scan, backslashes, limits) if limits is not None else False
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # only without the pre-scan: deeper than Python recurses
        raise BadRequestError(400, "json_too_deep", "JSON body is nested too deeply") from None
    except ValueError:
        raise BadRequestError(400, "malformed_json", "request body is not valid JSON") from None
    if maybe_more and limits is not None and _count_values(value) > limits.max_elements:
        raise BadRequestError(400, "json_too_many_elements", "JSON body has too many values")
    if backslashes and _SURROGATE_ESCAPE.search(scan) is not None and _has_lone_surrogate(value):
        raise BadRequestError(400, "malformed_json", "JSON string holds a lone surrogate")
    return value, text


def _prescan(scan: bytes, backslashes: int, limits: BodyLimits) -> bool:
    """Check nesting depth and count values from the bytes alone, in a few C-speed passes.

    Escaped backslashes and quotes go first, then every byte but quotes, brackets, commas
    and colons. In valid JSON two strings never touch, so each '""' left is one string
    without such characters; the rest pair up quote by quote. Up to the first syntax error
    this reading agrees with json.loads, so the depth bound holds for any input. Returns
    True when the value count may exceed the limit and must be counted after parsing.
    """
    if backslashes * 100 > len(scan):  # replace() costs little per match, re.sub() much
        scan = scan.replace(b"\\\\", b"").replace(b'\\"', b"")
    elif backslashes:
        scan = _ESCAPED_QUOTE_OR_BACKSLASH.sub(b"", scan)
    shape = scan.translate(None, _NOT_STRUCTURE).replace(b'""', b"0")
    if b'"' in shape:  # strings holding brackets, commas or colons: every other piece
        shape = b"0".join(shape.split(b'"')[::2])
    _check_depth(shape.translate(_CURLY_TO_SQUARE, _NOT_BRACKET), limits.max_depth)
    # Values = the root + one per container member = 1 + commas + non-empty containers.
    # Numbers and literals were dropped, so "[]" here is an empty array or one like [5].
    shape = shape.translate(_CURLY_TO_SQUARE)
    empty_or_single = shape.count(b"[]")
    least = 1 + shape.count(b",") + shape.count(b"[") - empty_or_single
    if least > limits.max_elements:
        raise BadRequestError(400, "json_too_many_elements", "JSON body has too many values")
    return least + empty_or_single > limits.max_elements


def _check_depth(brackets: bytes, max_depth: int) -> None:
    """Refuse bracket sequences nested deeper than max_depth, in linear time.

    Each pass deletes every "[]", the innermost level, so a balanced sequence empties in as
    many passes as it is deep. When a pass shrinks a long sequence little (long chains), a
    signed prefix sum over what is left finishes the job: removing pairs lowers the peak by
    at most one per pass, so passes + peak is never below the true depth.
    """
    depth = 0
    while brackets:
        if depth == max_depth:
            raise BadRequestError(400, "json_too_deep", "JSON body is nested too deeply")
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            raise BadRequestError(400, "malformed_json", "JSON body has unbalanced brackets")
        depth += 1
        if len(inner) > _LONG_BRACKETS and len(inner) * 8 > len(brackets) * 7:
            left = max_depth - depth
            if (
                b"[" * (left + 1) in inner
                or max(accumulate(array("b", inner.translate(_STEPS)))) > left
            ):
                raise BadRequestError(400, "json_too_deep", "JSON body is nested too deeply")
            return
        brackets = inner


def _count_values(root: object) -> int:
    count, stack = 0, [root]
    while stack:
        value = stack.pop()
        count += 1
        if type(value) is dict:
            stack += value.values()
        elif type(value) is list:
            stack += value
    return count


def _has_lone_surrogate(root: object) -> bool:
    values, every_key = _walk(root, every_key=True)
    return any(_LONE_SURROGATE.search(item) for walk in (values, every_key) for _, item in walk)


def _parse_form(
    raw: bytes, charset: str, limits: BodyLimits
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """application/x-www-form-urlencoded: '&'-separated pairs, '+' as space, strict escapes."""
    text = decode(raw, charset)
    if text.count("&") >= limits.max_elements:
        raise BadRequestError(400, "malformed_form", "form body has too many fields")
    codec = CHARSETS[charset]
    fields = []
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields.append((_form_unquote(name, codec), _form_unquote(value, codec)))
    return text, tuple(fields)


def _form_unquote(part: str, codec: str) -> str:
    part = part.replace("+", " ")
    if "%" not in part:
        return part
    if _BAD_PERCENT.search(part):
        raise BadRequestError(400, "malformed_form", "malformed percent-encoding in form body")
    try:
        return unquote(part, encoding=codec, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestError(400, "bad_charset", "form field does not decode") from None
