"""Media types, charsets and multipart/form-data: the header-level half of body parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from guardrail_authz.engine.request import BadRequestError

TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"{TCHARS}/{TCHARS}")
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
_PARAM = re.compile(rf"[ \t]*;[ \t]*(?:({TCHARS})=({TCHARS}|{_QUOTED}))?")
_QUOTED_PAIR = re.compile(r"\\(.)")
# Content-Disposition values are quoted the way browsers do it: no backslash escapes, so a
# backslash (read one way by some frameworks and another way by others) is refused.
_DISPOSITION_PARAM = re.compile(rf'[ \t]*;[ \t]*(?:({TCHARS})=({TCHARS}|"[^"\\\x00-\x1f\x7f]*"))?')
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})

# Charset labels we decode, mapped to Python codecs. UTF-7 and Python's escape codecs are left
# out on purpose: they let one byte string mean different text to us and to the upstream.
CHARSETS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "latin1": "latin-1",
    "latin-1": "latin-1",
    "l1": "latin-1",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-32": "utf-32",
    "utf-32le": "utf-32-le",
    "utf-32be": "utf-32-be",
    "koi8-r": "koi8-r",
    "koi8-u": "koi8-u",
    "shift_jis": "shift_jis",
    "euc-jp": "euc-jp",
    "iso-2022-jp": "iso-2022-jp",
    "gb2312": "gb2312",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "big5": "big5",
    "euc-kr": "euc-kr",
}
CHARSETS.update({f"iso-8859-{n}": f"iso8859-{n}" for n in (*range(2, 12), *range(13, 17))})
CHARSETS.update({f"windows-{n}": f"cp{n}" for n in range(1250, 1259)})
CHARSETS.update({f"cp{n}": f"cp{n}" for n in range(1250, 1259)})
# Codecs in which every ASCII byte stands for itself (no multi-byte sequence contains one).
ASCII_SAFE = frozenset(
    {"utf-8", "ascii", "latin-1", "koi8-r", "koi8-u"}
    | {f"iso8859-{n}" for n in range(2, 17)}
    | {f"cp{n}" for n in range(1250, 1259)}
)
# Without a byte order mark these would be read in the machine's byte order, not RFC 2781's.
_BOMS = {"utf-16": (b"\xff\xfe", b"\xfe\xff"), "utf-32": (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")}


@dataclass(frozen=True, slots=True)
class FilePart:
    """A multipart file upload: its field, the file name and type it claims, and its size."""

    field: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed Content-Type value: lower-case media type and the parameters we use."""

    media_type: str
    charset: str | None
    boundary: str | None


def content_type(header: str) -> ContentType:
    """Parse a Content-Type value (RFC 9110 syntax); 415 unsupported_content_type if malformed."""
    # Clients repeat a handful of values; only short ones are cached, so memory stays bounded.
    return _cached_content_type(header) if len(header) <= 128 else _content_type(header)


def _content_type(header: str) -> ContentType:
    header = header.strip(" \t")
    if not header:
        return ContentType("", None, None)
    match = _MEDIA_TYPE.match(header)
    if match is None:
        raise BadRequestError(415, "unsupported_content_type", "malformed content type")
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(header):
        param = _PARAM.match(header, pos)
        if param is None:
            raise BadRequestError(415, "unsupported_content_type", "malformed content type")
        pos = param.end()
        if param.group(1) is None:
            continue
        name, value = param.group(1).lower(), param.group(2)
        if value.startswith('"'):
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        if name in params:
            msg = "repeated content type parameter"
            raise BadRequestError(415, "unsupported_content_type", msg)
        params[name] = value
    charset = params.get("charset")
    return ContentType(
        match.group(0).lower(), None if charset is None else charset.lower(), params.get("boundary")
    )


_cached_content_type = lru_cache(maxsize=256)(_content_type)


def codec(charset: str) -> str:
    """The Python codec for a charset label; 400 bad_charset for labels we do not decode."""
    name = CHARSETS.get(charset)
    if name is None:
        raise BadRequestError(400, "bad_charset", "unsupported charset")
    return name


def decode(raw: bytes, charset: str) -> str:
    """Decode bytes strictly with a charset label; 400 bad_charset when unknown or invalid."""
    name = codec(charset)
    if name in _BOMS and not raw.startswith(_BOMS[name]):
        raise BadRequestError(400, "bad_charset", f"{charset} text without a byte order mark")
    try:
        return raw.decode(name)
    except UnicodeDecodeError:
        raise BadRequestError(400, "bad_charset", f"body is not valid {charset}") from None


def _bad(message: str) -> BadRequestError:
    return BadRequestError(400, "malformed_multipart", message)


def parse_multipart(
    raw: bytes, boundary: str, charset: str, max_parts: int
) -> tuple[tuple[tuple[str, str], ...], tuple[FilePart, ...]]:
    """multipart/form-data (RFC 7578), strictly: CRLF lines, no preamble, no encodings."""
    if not _BOUNDARY.fullmatch(boundary):
        raise _bad("invalid multipart boundary")
    codec(charset)
    delimiter = b"--" + boundary.encode("ascii")
    separator = b"\r\n" + delimiter
    pos = 2 if raw.startswith(b"\r\n") else 0
    if not raw.startswith(delimiter, pos):
        raise _bad("multipart body does not start with its boundary")
    pos += len(delimiter)
    fields: list[tuple[str, str]] = []
    files: list[FilePart] = []
    while not raw.startswith(b"--", pos):
        eol = raw.find(b"\r\n", pos)
        if eol == -1 or raw[pos:eol].strip(b" \t"):
            raise _bad("unexpected data after a multipart boundary")
        end = raw.find(separator, eol + 2)
        if end == -1:
            raise _bad("multipart body is not terminated")
        if len(fields) + len(files) >= max_parts:
            raise _bad("multipart body has too many parts")
        _part(raw[eol + 2 : end], charset, fields, files)
        pos = end + len(separator)
    if raw[pos + 2 :].strip(b" \t\r\n"):
        raise _bad("data after the closing multipart boundary")
    return tuple(fields), tuple(files)


def _part(part: bytes, charset: str, fields: list[tuple[str, str]], files: list[FilePart]) -> None:
    head_end = part.find(b"\r\n\r\n")
    if head_end == -1:
        raise _bad("multipart part without a header section")
    headers: dict[str, str] = {}
    for line in part[:head_end].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name) or b"\r" in value or b"\n" in value:
            raise _bad("malformed multipart part header")
        key = name.decode("ascii").lower()
        if key in headers:
            raise _bad("repeated multipart part header")
        try:
            headers[key] = value.decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            raise _bad("multipart part header is not UTF-8") from None
    if headers.get("content-transfer-encoding", "binary").lower() not in _IDENTITY_ENCODINGS:
        raise _bad("multipart part uses a content transfer encoding")
    params = _disposition(headers.get("content-disposition", ""))
    part_type = ContentType("", None, None)
    if "content-type" in headers:
        try:
            part_type = content_type(headers["content-type"])
        except BadRequestError:
            raise _bad("malformed multipart part content type") from None
    content = part[head_end + 4 :]
    if "filename" in params:
        files.append(
            FilePart(params["name"], params["filename"], part_type.media_type, len(content))
        )
    else:
        part_charset = charset if part_type.charset is None else part_type.charset
        fields.append((params["name"], decode(content, part_charset)))


def _disposition(value: str) -> dict[str, str]:
    """Parameters of 'form-data; name=...; filename=...'; anything ambiguous is refused."""
    if value[:9].lower() != "form-data":
        raise _bad("multipart part is not form-data")
    params: dict[str, str] = {}
    pos = 9
    while pos < len(value):
        param = _DISPOSITION_PARAM.match(value, pos)
        if param is None:
            raise _bad("malformed multipart content disposition")
        pos = param.end()
        if param.group(1) is None:
            continue
        name, item = param.group(1).lower(), param.group(2)
        # RFC 7578 section 4.2: filename* must not be used; two names are two readings.
        if name in params or name == "filename*":
            raise _bad("ambiguous multipart content disposition")
        params[name] = item[1:-1] if item.startswith('"') else item
    if "name" not in params:
        raise _bad("multipart part without a field name")
    return params
