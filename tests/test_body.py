"""Request body parsing: media types, charsets, JSON limits, forms, multipart and field paths."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.engine.request import BadRequestError
from guardrail_authz.payload.body import (
    BodyLimits,
    FilePart,
    ParsedBody,
    json_path,
    keys,
    parse_body,
    strings,
)

DEFAULT = BodyLimits()
FORM = "application/x-www-form-urlencoded"


def _parse(raw: bytes, content_type: str | None, limits: BodyLimits = DEFAULT) -> ParsedBody:
    return parse_body(raw, content_type, limits)


def _error(raw: bytes, content_type: str | None, limits: BodyLimits = DEFAULT) -> BadRequestError:
    with pytest.raises(BadRequestError) as info:
        parse_body(raw, content_type, limits)
    return info.value


def _attempt(
    raw: bytes, content_type: str | None, limits: BodyLimits = DEFAULT
) -> ParsedBody | BadRequestError:
    """The parsed body or the refusal, for properties that accept either."""
    try:
        return parse_body(raw, content_type, limits)
    except BadRequestError as err:
        return err


def _reason(raw: bytes, content_type: str | None, limits: BodyLimits = DEFAULT) -> str:
    return _error(raw, content_type, limits).reason


def _count(value: object) -> int:
    """Reference: JSON values in a document, recursively (test data is shallow)."""
    if isinstance(value, dict):
        return 1 + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    return 1


def _depth(value: object) -> int:
    """Reference: container nesting depth (a scalar is 0, [] is 1)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# --- media types and kinds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw", "kind", "media_type"),
    [
        ("application/json", b'{"a": 1}', "json", "application/json"),
        ("Application/JSON; charset=UTF-8", b"[1]", "json", "application/json"),
        ("application/problem+json", b'{"title": "x"}', "json", "application/problem+json"),
        ("application/vnd.api+json", b"{}", "json", "application/vnd.api+json"),
        (FORM, b"a=1", "form", FORM),
        ("multipart/form-data; boundary=b", b"--b--\r\n", "multipart", "multipart/form-data"),
        ("text/plain", b"hello", "text", "text/plain"),
        ("text/html; charset=utf-8", b"<p>", "text", "text/html"),
        ("application/xml", b"<a/>", "text", "application/xml"),
        ("application/soap+xml", b"<a/>", "text", "application/soap+xml"),
        ("application/graphql", b"{ a }", "text", "application/graphql"),
        ("application/javascript", b"f()", "text", "application/javascript"),
        ("application/octet-stream", b"\x00\xff", "binary", "application/octet-stream"),
        ("image/png", b"\x89PNG", "binary", "image/png"),
        (None, b"anything", "binary", ""),
        ("", b"anything", "binary", ""),
        ("application/json", b"", "empty", "application/json"),
        (None, b"", "empty", ""),
    ],
)
def test_kind_by_media_type(
    content_type: str | None, raw: bytes, kind: str, media_type: str
) -> None:
    body = _parse(raw, content_type)
    assert body.kind == kind
    assert body.media_type == media_type
    assert body.raw == raw


def test_binary_bodies_are_not_decoded_even_with_an_unknown_charset() -> None:
    body = _parse(b"\xff\xfe\x00", "application/octet-stream; charset=nonsense")
    assert body.kind == "binary"
    assert body.text == ""
    assert list(strings(body)) == []


def test_json_body_fields() -> None:
    body = _parse(b'{"a": [1, "x"]}', "application/json")
    assert body.json == {"a": [1, "x"]}
    assert body.text == '{"a": [1, "x"]}'
    assert body.charset == "utf-8"
    assert body.fields == ()
    assert body.files == ()


@pytest.mark.parametrize(
    "content_type",
    [
        "json",
        "application/",
        "/json",
        "application/json, text/plain",
        "application/json garbage",
        "application/json; charset",
        "application/json; charset=",
        'application/json; charset="utf-8',
        "application/json; =utf-8",
        "application/json; charset=utf-8; charset=latin-1",
        "appli cation/json",
    ],
)
def test_malformed_content_type_is_415(content_type: str) -> None:
    err = _error(b"{}", content_type)
    assert (err.status, err.reason) == (415, "unsupported_content_type")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json;",
        "application/json ; charset=utf-8",
        'application/json; charset="utf-8"',
        "application/json;;charset=utf-8",
        "application/json; Charset=UTF-8",
        "  application/json  ",
        'application/json; foo=bar; baz="q\\"uoted"',
        "application/json; x-long=" + "a" * 300,  # too long for the parse cache
    ],
)
def test_well_formed_content_type_variants(content_type: str) -> None:
    body = _parse(b"{}", content_type)
    assert (body.kind, body.media_type, body.charset) == ("json", "application/json", "utf-8")


@pytest.mark.parametrize(
    ("allowed", "content_type", "ok"),
    [
        (("application/json",), "application/json", True),
        (("application/json",), "APPLICATION/JSON; charset=utf-8", True),
        (("application/json",), "application/problem+json", False),
        (("application/json",), "text/plain", False),
        (("application/json",), None, False),
        (("text/*",), "text/csv", True),
        (("text/*",), "application/json", False),
        (("*/*",), "image/png", True),
        (("application/json", "application/x-www-form-urlencoded"), FORM, True),
    ],
)
def test_allowed_content_types(
    allowed: tuple[str, ...], content_type: str | None, ok: bool
) -> None:
    limits = BodyLimits(content_types=allowed)
    if ok:
        _parse(b"a=1" if content_type == FORM else b"{}", content_type, limits)
    else:
        err = _error(b"{}", content_type, limits)
        assert (err.status, err.reason) == (415, "unsupported_content_type")


def test_empty_body_is_not_checked_against_allowed_types() -> None:
    body = _parse(b"", "text/plain", BodyLimits(content_types=("application/json",)))
    assert body.kind == "empty"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bytes": -1},
        {"max_depth": 0},
        {"max_depth": 257},
        {"max_elements": 0},
        {"content_types": ("Application/JSON",)},
        {"content_types": ("json",)},
        {"content_types": ("application/json; charset=utf-8",)},
    ],
)
def test_body_limits_validate_themselves(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        BodyLimits(**kwargs)  # type: ignore[arg-type]


def test_size_limit() -> None:
    limits = BodyLimits(max_bytes=10)
    assert _parse(b"[1,2,3,4] ", "application/json", limits).json == [1, 2, 3, 4]
    err = _error(b"[1,2,3,4,5]", "application/json", limits)
    assert (err.status, err.reason) == (413, "body_too_large")
    # size is checked before anything else, even the content type
    assert _reason(b"x" * 11, "not a type", limits) == "body_too_large"


def test_bytes_like_input_is_accepted() -> None:
    assert _parse(bytearray(b"[1]"), "application/json").json == [1]  # type: ignore[arg-type]


# --- charsets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "raw", "text"),
    [
        ("utf-8", "café 山田".encode(), "café 山田"),
        ("UTF8", "café".encode(), "café"),
        ("iso-8859-1", "café".encode("latin-1"), "café"),
        ("latin1", b"\xe9", "é"),
        ("windows-1252", b"\x80 5", "€ 5"),
        ("cp1251", "привет".encode("cp1251"), "привет"),
        ("us-ascii", b"plain", "plain"),
        ("utf-16", "héllo".encode("utf-16-le").join([b"\xff\xfe", b""]), "héllo"),
        ("utf-16", b"\xfe\xff" + "héllo".encode("utf-16-be"), "héllo"),
        ("utf-16le", "héllo".encode("utf-16-le"), "héllo"),
        ("utf-16be", "héllo".encode("utf-16-be"), "héllo"),
        ("iso-8859-15", b"\xa4", "€"),
        ("shift_jis", "ソース".encode("shift_jis"), "ソース"),
        ("koi8-r", "мир".encode("koi8-r"), "мир"),
    ],
)
def test_text_charsets(charset: str, raw: bytes, text: str) -> None:
    body = _parse(raw, f"text/plain; charset={charset}")
    assert body.text == text
    assert body.charset == charset.lower()
    assert list(strings(body)) == [("body", text)]


@pytest.mark.parametrize(
    ("charset", "raw"),
    [
        ("utf-8", b"caf\xe9"),
        ("utf-8", b"\xed\xa0\x80"),  # an encoded surrogate
        ("utf-8", b"\xc0\xaf"),  # overlong '/'
        ("us-ascii", b"caf\xc3\xa9"),
        ("utf-16", "no bom".encode("utf-16-le")),
        ("utf-16le", b"\x00"),
        ("utf-7", b"+ADw-script+AD4-"),
        ("unicode_escape", b"\\x3c"),
        ("rot13", b"nope"),
        ("base64", b"PHNjcmlwdD4="),
        ("x-unknown", b"a"),
        ("", b"a"),
    ],
)
def test_bad_charsets(charset: str, raw: bytes) -> None:
    err = _error(raw, f"text/plain; charset={charset}" if charset else 'text/plain; charset=""')
    assert (err.status, err.reason) == (400, "bad_charset")


@pytest.mark.parametrize(
    ("charset", "doc"),
    [
        ("utf-16", {"name": "Zoë [x]", "k": "ソ\\", "l": [1, {"m": '"'}]}),
        ("utf-16be", {"name": "Zoë [x]", "k": "ソ\\", "l": [1, {"m": '"'}]}),
        ("utf-32", {"name": "Zoë [x]", "k": "ソ\\"}),
        ("latin-1", {"name": "Zoë [x]", "k": "\\", "l": [1, {"m": '"'}]}),
        ("windows-1252", {"price": "€5", "l": [[]]}),
        ("shift_jis", {"k": "ソース\\", "l": ["表", {"m": "能"}]}),
        ("gb18030", {"name": "山田 [x]", "k": "\\"}),
        ("big5", {"k": "許功蓋", "l": [1]}),
    ],
)
def test_json_in_other_charsets(charset: str, doc: object) -> None:
    raw = json.dumps(doc, ensure_ascii=False).encode(charset)
    body = _parse(raw, f"application/json; charset={charset}", BodyLimits(max_depth=_depth(doc)))
    assert body.json == doc
    assert list(strings(body)) == list(
        strings(_parse(json.dumps(doc).encode(), "application/json"))
    )


def test_shift_jis_trail_bytes_are_not_read_as_json_escapes() -> None:
    # "ソ" is 0x83 0x5C in Shift_JIS: a byte-level scan would see a backslash before the quote.
    raw = '{"a": "ソ", "b": [1]}'.encode("shift_jis")
    assert b'\\"' in raw
    body = _parse(raw, "application/json; charset=shift_jis")
    assert body.json == {"a": "ソ", "b": [1]}
    # read byte-wise, the brackets in the second string would count as nesting
    ct = "application/json; charset=shift_jis"
    doc = ["ソ", "[[[[[", "x"]
    assert (
        _parse(
            json.dumps(doc, ensure_ascii=False).encode("shift_jis"), ct, BodyLimits(max_depth=1)
        ).json
        == doc
    )


def test_json_with_an_undecodable_body() -> None:
    assert _reason(b'{"a": "\xff"}', "application/json") == "bad_charset"


# --- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[1,]",
        b'{"a" 1}',
        b"[1] [2]",
        b"  ",
        b"nul",
        b"'single'",
        b'{"a": NaN}',
        b"[Infinity]",
        b"[-Infinity]",
        b'"unterminated',
        b'"\\"',
        b'["a\\", "b"]',
        b"]",
        b"[[]]]",
        b"{]",
        b'"a\nb"',  # raw control character in a string
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'"\\ud800"',
        b'"\\udc00\\ud800"',
        b'{"\\ud800": 1}',
        b'["ok", "\\uDBFF"]',
        b"1" * 5000,  # beyond Python's int digit limit
        b"[01]",
        b'{"a": 1,}',
    ],
)
def test_malformed_json(raw: bytes) -> None:
    err = _error(raw, "application/json")
    assert (err.status, err.reason) == (400, "malformed_json")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then plain text
        (b'{"a": 1, "a": 2}', {"a": 2}),
        (b"1e400", math.inf),
        (b"  [ ]  ", []),
        (b'"[[[[{{{{"', "[[[[{{{{"),
        (b'["\\"[", "]\\"", "\\\\"]', ['"[', ']"', "\\"]),
        (b"-0.5e-3", -0.0005),
        (b"null", None),
    ],
)
def test_json_values(raw: bytes, value: object) -> None:
    assert _parse(raw, "application/json").json == value


@pytest.mark.parametrize("depth", [1, 2, 17, 63, 64])
def test_json_depth_within_limit(depth: int) -> None:
    raw = b'{"k": ' * (depth // 2) + b"[" * (depth - depth // 2) + b"]" * (depth - depth // 2)
    raw += b"}" * (depth // 2)
    assert _depth(_parse(raw, "application/json").json) == depth


@pytest.mark.parametrize("depth", [65, 100, 1000, 200_000])
def test_json_too_deep(depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    assert _reason(raw, "application/json", BodyLimits(max_bytes=1 << 20)) == "json_too_deep"


def test_json_depth_limit_is_configurable() -> None:
    deepest = BodyLimits(max_depth=256)
    assert _depth(_parse(b"[" * 256 + b"]" * 256, "application/json", deepest).json) == 256
    assert _reason(b"[" * 257 + b"]" * 257, "application/json", deepest) == "json_too_deep"
    limits = BodyLimits(max_depth=2)
    assert _parse(b'{"a": [1]}', "application/json", limits).json == {"a": [1]}
    assert _reason(b'{"a": [[1]]}', "application/json", limits) == "json_too_deep"


def test_unbalanced_deep_brackets_fail_fast() -> None:
    start = time.perf_counter()
    assert _reason(b"[" * 1_000_000, "application/json", BodyLimits(max_bytes=1 << 21)) in (
        "malformed_json",
        "json_too_deep",
    )
    assert time.perf_counter() - start < 1.0


def _chain(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [2, 30, 63, 64])
def test_long_bracket_sequences_get_an_exact_depth(depth: int) -> None:
    # many long chains: each pass removes little, so the prefix-sum path decides
    chains = [_chain(depth - 1)] * 150 + [_chain(depth // 2)] * 500
    raw = b"[" + b",".join(chains) + b"]"
    limits = BodyLimits(max_depth=depth, max_bytes=1 << 20)
    assert _depth(_parse(raw, "application/json", limits).json) == depth
    if depth > 1:
        tight = BodyLimits(max_depth=depth - 1, max_bytes=1 << 20)
        assert _reason(raw, "application/json", tight) == "json_too_deep"


@pytest.mark.parametrize("spine", [10, 40, 61])
def test_deep_spines_without_long_runs_are_measured_exactly(spine: int) -> None:
    # every level has a sibling, so no long run of "[" gives the depth away
    inner = b"0"
    for _ in range(spine):
        inner = b"[[[]]," + inner + b"]"
    raw = b"[" + b",".join([_chain(50)] * 200) + b"," + inner + b"]"
    depth = _depth(json.loads(raw))
    assert _depth(_parse(raw, "application/json", BodyLimits(max_depth=depth)).json) == depth
    assert _reason(raw, "application/json", BodyLimits(max_depth=depth - 1)) == "json_too_deep"


def test_a_deep_chain_after_a_wide_start_is_caught() -> None:
    raw = b"[" + b"[]," * 3000 + b"[" * 80 + b"1" + b"]" * 80 + b"]"
    assert _reason(raw, "application/json") == "json_too_deep"
    assert _depth(_parse(raw, "application/json", BodyLimits(max_depth=81)).json) == 81


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1_000_000,
        _chain(500_000),
        b"[[]," * 250_000,
        b"[" + b'",",' * 249_999 + b'","]',
        b'"' + b'\\"' * 499_999 + b'"',
        b'"' + b"\\\\" * 499_999 + b'"',
        b"[" + b"[0]," * 250_000 + b"[0]]",
        b"{" + b'"k":{},' * 140_000 + b'"k":{}}',
    ],
)
def test_megabyte_bodies_stay_linear(raw: bytes) -> None:
    limits = BodyLimits(max_bytes=1 << 21, max_elements=1_000_000)
    start = time.perf_counter()
    outcome = _attempt(raw, "application/json", limits)
    assert time.perf_counter() - start < 1.0
    assert not isinstance(outcome, BadRequestError) or outcome.status == 400


def test_escape_heavy_strings_keep_their_structure() -> None:
    doc = ['\\"[', '"]\\', "\\\\", '"{"'] * 500  # backslashes in over 1% of the bytes
    raw = json.dumps(doc).encode()
    assert raw.count(b"\\") * 100 > len(raw)
    assert _parse(raw, "application/json", BodyLimits(max_depth=1)).json == doc


def test_brackets_inside_strings_do_not_count() -> None:
    doc = ["[" * 500, "{" * 500, '"[{\\', "]]]"]
    assert _parse(json.dumps(doc).encode(), "application/json", BodyLimits(max_depth=1)).json == doc


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {},
        [1],
        [[1], [2], [3]],
        [[], {}, [[]], [{}]],
        {"a": [1, 2, {"b": None}], "c": "x,y:z", "d": [True]},
        ["[1]", "a,b", "{:}", ""],
        "scalar",
        [[[[5]]]],
        {"a": {"b": {"c": [False]}}},
        [{"k": [0]} for _ in range(10)],
    ],
)
def test_json_element_limit_is_exact(doc: object) -> None:
    raw = json.dumps(doc).encode()
    count = _count(doc)
    assert _parse(raw, "application/json", BodyLimits(max_elements=count)).json == doc
    if count > 1:
        assert _reason(raw, "application/json", BodyLimits(max_elements=count - 1)) == (
            "json_too_many_elements"
        )


def test_many_elements_default_limit() -> None:
    raw = b"[" + b"0," * 100_000 + b"0]"  # 100,002 values
    assert _reason(raw, "application/json") == "json_too_many_elements"
    raw = b"[" + b"0," * 99_998 + b"0]"  # exactly 100,000
    assert len(_parse(raw, "application/json").json) == 99_999  # type: ignore[arg-type]


def test_single_scalar_arrays_are_counted_after_parsing() -> None:
    doc = [[1]] * 40
    raw = json.dumps(doc).encode()  # 81 values; the byte scan alone sees 41 to 81
    assert _reason(raw, "application/json", BodyLimits(max_elements=80)) == (
        "json_too_many_elements"
    )
    assert _parse(raw, "application/json", BodyLimits(max_elements=81)).json == doc


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab "\\[]{},:\n\té山\U0001f600/'), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.sampled_from('k"\\[{,: é'), max_size=4), children, max_size=4
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(doc=json_values, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_prescan_agrees_with_a_reference_walk(
    doc: object, ascii_only: bool, indent: int | None
) -> None:
    raw = json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode()
    count, depth = _count(doc), _depth(doc)
    exact = BodyLimits(max_depth=max(depth, 1), max_elements=count)
    assert _parse(raw, "application/json", exact).json == doc
    if count > 1:
        tight = BodyLimits(max_elements=count - 1)
        assert _reason(raw, "application/json", tight) == "json_too_many_elements"
    if depth > 1:
        shallow = BodyLimits(max_depth=depth - 1)
        assert _reason(raw, "application/json", shallow) == "json_too_deep"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(
        alphabet=st.sampled_from('[]{}",:\\ 01-.etruflsaxnNI\u00e9'), min_size=1, max_size=40
    )
)
def test_json_like_text_agrees_with_json_loads(text: str) -> None:
    try:
        expected: object = json.loads(text, parse_constant=float)
    except (ValueError, RecursionError):
        expected = ValueError
    outcome = _attempt(text.encode(), "application/json")
    if isinstance(outcome, BadRequestError):
        assert outcome.status == 400
        # NaN and Infinity are refused; otherwise only what json.loads refuses is refused
        assert expected is ValueError or "N" in text or "I" in text
    else:
        assert expected is not ValueError
        assert outcome.json == expected


# --- form bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (b"a=1&b=2", (("a", "1"), ("b", "2"))),
        (b"q=hello+world&x=%41%42", (("q", "hello world"), ("x", "AB"))),
        (b"n=%E5%B1%B1%E7%94%B0", (("n", "山田"),)),
        (b"tag=a&tag=b&tag=a", (("tag", "a"), ("tag", "b"), ("tag", "a"))),
        (b"flag&empty=&=v", (("flag", ""), ("empty", ""), ("", "v"))),
        (b"a=1&&b=2&", (("a", "1"), ("b", "2"))),
        (b"a=1;b=2", (("a", "1;b=2"),)),
        (b"k%20y=a%2Bb%26c%3Dd", (("k y", "a+b&c=d"),)),
        (b"eq=a=b", (("eq", "a=b"),)),
    ],
)
def test_form_fields(raw: bytes, fields: tuple[tuple[str, str], ...]) -> None:
    body = _parse(raw, FORM)
    assert body.kind == "form"
    assert body.fields == fields
    assert body.text == raw.decode()


def test_form_in_latin1() -> None:
    body = _parse(b"name=Zo%EB&city=K%F6ln", f"{FORM}; charset=ISO-8859-1")
    assert body.fields == (("name", "Zoë"), ("city", "Köln"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"a=%zz", "malformed_form"),
        (b"a=%4", "malformed_form"),
        (b"a=100%", "malformed_form"),
        (b"%g0=1", "malformed_form"),
        (b"a=%FF", "bad_charset"),
        (b"a=%C3", "bad_charset"),
        (b"a=\xff", "bad_charset"),
    ],
)
def test_bad_forms(raw: bytes, reason: str) -> None:
    assert _reason(raw, FORM) == reason


def test_form_field_count_limit() -> None:
    limits = BodyLimits(max_elements=3)
    assert len(_parse(b"a&b&c", FORM, limits).fields) == 3
    assert _reason(b"a&b&c&d", FORM, limits) == "malformed_form"


# --- multipart -------------------------------------------------------------------------------


def _multipart(*parts: bytes, boundary: bytes = b"XyZ", end: bytes = b"--\r\n") -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return out + b"--" + boundary + end


def _field(name: bytes, value: bytes, *headers: bytes) -> bytes:
    head = b'Content-Disposition: form-data; name="' + name + b'"\r\n' + b"".join(headers)
    return head + b"\r\n" + value


MP = "multipart/form-data; boundary=XyZ"


def test_multipart_fields_and_files() -> None:
    raw = _multipart(
        _field(b"title", b"hello\r\nworld"),
        b'Content-Disposition: form-data; name="upload"; filename="a b.txt"\r\n'
        b"Content-Type: Text/Plain\r\n\r\n\x00\x01binary",
        _field(b"title", "山田".encode()),
        b'Content-Disposition: form-data; name="empty"; filename=""\r\n\r\n',
    )
    body = _parse(raw, MP)
    assert body.kind == "multipart"
    assert body.fields == (("title", "hello\r\nworld"), ("title", "山田"))
    assert body.files == (
        FilePart("upload", "a b.txt", "text/plain", 8),
        FilePart("empty", "", "", 0),
    )
    assert body.text == ""
    assert list(strings(body)) == [
        ("form.title", "hello\r\nworld"),
        ("form.title", "山田"),
        ("file.upload.filename", "a b.txt"),
        ("file.empty.filename", ""),
    ]
    assert list(keys(body)) == [
        ("form", "title"),
        ("form", "title"),
        ("file", "upload"),
        ("file", "empty"),
    ]


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/form-data; boundary="XyZ"',
        "Multipart/Form-Data; boundary=XyZ; charset=utf-8",
    ],
)
def test_multipart_boundary_forms(content_type: str) -> None:
    assert _parse(_multipart(_field(b"a", b"1")), content_type).fields == (("a", "1"),)


def test_multipart_with_a_quoted_boundary_holding_spaces() -> None:
    raw = _multipart(_field(b"a", b"1"), boundary=b"a b'c")
    assert _parse(raw, 'multipart/form-data; boundary="a b\'c"').fields == (("a", "1"),)


def test_multipart_layout_tolerances() -> None:
    raw = b"\r\n" + _multipart(_field(b"a", b"1"), end=b"--\r\n\r\n  \r\n")
    assert _parse(raw, MP).fields == (("a", "1"),)
    padded = b"--XyZ  \r\n" + _field(b"a", b"1") + b"\r\n--XyZ--"
    assert _parse(padded, MP).fields == (("a", "1"),)


def test_multipart_part_charsets() -> None:
    raw = _multipart(
        _field(b"a", "Zoë".encode("latin-1"), b"Content-Type: text/plain; charset=latin-1\r\n"),
        _field(b"b", "Zoë".encode()),
    )
    assert _parse(raw, MP).fields == (("a", "Zoë"), ("b", "Zoë"))
    raw = _multipart(_field(b"a", "Zoë".encode("latin-1")))
    assert _reason(raw, MP) == "bad_charset"
    raw = _multipart(_field(b"a", b"x", b"Content-Type: text/plain; charset=klingon\r\n"))
    assert _reason(raw, MP) == "bad_charset"


def test_multipart_transfer_encodings() -> None:
    for encoding in (b"8bit", b"7BIT", b"binary"):
        raw = _multipart(_field(b"a", b"1", b"Content-Transfer-Encoding: " + encoding + b"\r\n"))
        assert _parse(raw, MP).fields == (("a", "1"),)
    raw = _multipart(_field(b"a", b"PHNjcmlwdD4=", b"Content-Transfer-Encoding: base64\r\n"))
    assert _reason(raw, MP) == "malformed_multipart"


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (_multipart(_field(b"a", b"1")), "multipart/form-data"),
        (
            _multipart(_field(b"a", b"1"), boundary=b"x" * 71),
            "multipart/form-data; boundary=" + "x" * 71,
        ),
        (_multipart(_field(b"a", b"1"), boundary=b"a;b"), 'multipart/form-data; boundary="a;b"'),
        (
            _multipart(_field(b"a", b"1"), boundary=b"ends "),
            'multipart/form-data; boundary="ends "',
        ),
        (_multipart(_field(b"a", b"1"), end=b""), MP),  # no closing delimiter
        (_multipart(_field(b"a", b"1"), end=b"--\r\nepilogue"), MP),
        (b"preamble\r\n" + _multipart(_field(b"a", b"1")), MP),
        (_multipart(_field(b"a", b"1")).replace(b"\r\n", b"\n"), MP),
        (b"--XyZ\r\n" + _field(b"a", b"1"), MP),  # unterminated part
        (b"--XyZ\r\n" + _field(b"a", b"1") + b"\r\n--XyZjunk\r\n--XyZ--", MP),
        (b"--XyZjunk\r\n" + _field(b"a", b"1") + b"\r\n--XyZ--", MP),
        (_multipart(b"\r\nno headers"), MP),
        (_multipart(b"Content-Type: text/plain\r\n\r\nno disposition"), MP),
        (_multipart(b"Content-Disposition: attachment; name=a\r\n\r\nx"), MP),
        (_multipart(b"Content-Disposition: form-data\r\n\r\nno name"), MP),
        (_multipart(b"Content-Disposition: form-data; filename=a.txt\r\n\r\nno name"), MP),
        (_multipart(b'Content-Disposition: form-data; name="a"; name="b"\r\n\r\nx'), MP),
        (
            _multipart(
                b"Content-Disposition: form-data; name=a; filename*=UTF-8''evil.php\r\n\r\nx"
            ),
            MP,
        ),
        (_multipart(b'Content-Disposition: form-data; name="a\\"; filename="x.php"\r\n\r\nx'), MP),
        (_multipart(b'Content-Disposition: form-data; name = "a"\r\n\r\nx'), MP),
        (_multipart(b'Content-Disposition: form-data; name="a" junk\r\n\r\nx'), MP),
        (_multipart(b'Content-Disposition: form-data; name="a\r\n\r\nx'), MP),
        (_multipart(_field(b"a", b"1", b'Content-Disposition: form-data; name="b"\r\n')), MP),
        (_multipart(_field(b"a", b"1", b" folded: header\r\n")), MP),
        (_multipart(_field(b"a", b"1", b"no colon here\r\n")), MP),
        (_multipart(_field(b"a", b"1", b"X-Bad: \xff\xfe\r\n")), MP),
        (_multipart(_field(b"a", b"1", b"Content-Type: not a type\r\n")), MP),
        (_multipart(_field(b"a", b"1", b"Content-Type: text/plain\rX: y\r\n")), MP),
    ],
)
def test_malformed_multipart(raw: bytes, content_type: str) -> None:
    err = _error(raw, content_type)
    assert (err.status, err.reason) == (400, "malformed_multipart")


def test_multipart_part_count_limit() -> None:
    raw = _multipart(*(_field(b"f", b"v") for _ in range(5)))
    assert len(_parse(raw, MP, BodyLimits(max_elements=5)).fields) == 5
    assert _reason(raw, MP, BodyLimits(max_elements=4)) == "malformed_multipart"


def test_multipart_ignores_unknown_part_headers() -> None:
    raw = _multipart(_field(b"a", b"1", b"X-Custom: whatever\r\n"))
    assert _parse(raw, MP).fields == (("a", "1"),)


# --- field paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "parts", "path"),
    [
        ("body", [], "body"),
        ("body", ["a", "b", 0, "c"], "body.a.b[0].c"),
        ("body", ["odd key"], 'body["odd key"]'),
        ("body", ["a-b", 3], 'body["a-b"][3]'),
        ("body", ["_x1"], "body._x1"),
        ("body", ["1a"], 'body["1a"]'),
        ("body", [""], 'body[""]'),
        ("body", ['q"uote\\'], 'body["q\\"uote\\\\"]'),
        ("body", ["café"], 'body["café"]'),
        ("form", ["user name"], 'form["user name"]'),
        ("file", ["upload", "filename"], "file.upload.filename"),
    ],
)
def test_json_path(base: str, parts: list[str | int], path: str) -> None:
    assert json_path(base, parts) == path


def test_strings_and_keys_of_json() -> None:
    doc = {
        "user": {"name": "Ann", "age": 3, "tags": ["a", 1, None, "b"], "ok": True},
        "odd key": "v",
        "list": [{"x": "y"}, [["deep"]]],
        "n": 1.5,
    }
    body = _parse(json.dumps(doc).encode(), "application/json")
    assert sorted(strings(body)) == sorted(
        [
            ("body.user.name", "Ann"),
            ("body.user.tags[0]", "a"),
            ("body.user.tags[3]", "b"),
            ('body["odd key"]', "v"),
            ("body.list[0].x", "y"),
            ("body.list[1][0][0]", "deep"),
        ]
    )
    assert sorted(keys(body)) == sorted(
        [
            ("body", "user"),
            ("body", "odd key"),
            ("body", "list"),
            ("body", "n"),
            ("body.user", "name"),
            ("body.user", "age"),
            ("body.user", "tags"),
            ("body.user", "ok"),
            ("body.list[0]", "x"),
        ]
    )


def test_strings_come_depth_first_in_document_order() -> None:
    body = _parse(b'{"a": {"b": "1"}, "c": "2", "d": ["3", {"e": "4"}]}', "application/json")
    assert list(strings(body)) == [
        ("body.a.b", "1"),
        ("body.c", "2"),
        ("body.d[0]", "3"),
        ("body.d[1].e", "4"),
    ]


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'"root"', [("body", "root")]),
        (b"42", []),
        (b'["a", ["b"]]', [("body[0]", "a"), ("body[1][0]", "b")]),
        (b"{}", []),
    ],
)
def test_strings_of_json_roots(raw: bytes, found: list[tuple[str, str]]) -> None:
    assert list(strings(_parse(raw, "application/json"))) == found


def test_strings_and_keys_of_forms_and_other_kinds() -> None:
    form = _parse(b"user+name=ann&x=1&x=2", FORM)
    assert list(strings(form)) == [('form["user name"]', "ann"), ("form.x", "1"), ("form.x", "2")]
    assert list(keys(form)) == [("form", "user name"), ("form", "x"), ("form", "x")]
    text = _parse(b"<xml/>", "application/xml")
    assert list(strings(text)) == [("body", "<xml/>")]
    assert list(keys(text)) == []
    for body in (_parse(b"", None), _parse(b"\x00", "image/png")):
        assert list(strings(body)) == []
        assert list(keys(body)) == []


def test_keys_of_deep_documents_do_not_recurse() -> None:
    raw = b'{"k": ' * 60 + b'"v"' + b"}" * 60
    body = _parse(raw, "application/json")
    assert len(list(keys(body))) == 60
    assert list(strings(body)) == [("body" + ".k" * 60, "v")]


# --- robustness ----------------------------------------------------------------------------------

CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-16",
    "application/json; charset=shift_jis",
    FORM,
    f"{FORM}; charset=latin-1",
    MP,
    "text/plain; charset=utf-8",
    "text/plain; charset=utf-32",
    "application/octet-stream",
    "bogus",
]


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes_only_raise_bad_request(raw: bytes, content_type: str | None) -> None:
    outcome = _attempt(raw, content_type, BodyLimits(max_bytes=200, max_elements=50))
    if isinstance(outcome, BadRequestError):
        assert outcome.status in (400, 413, 415)
        assert outcome.reason
    else:
        assert all(isinstance(v, str) for _, v in strings(outcome))
        assert all(isinstance(k, str) for _, k in keys(outcome))


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.sampled_from(
            [
                b"--XyZ",
                b"\r\n",
                b"--",
                b"Content-Disposition: form-data; ",
                b'name="a"',
                b"; ",
                b'filename="f"',
                b"Content-Type: text/plain",
                b"x",
                b"\xff",
                b" ",
                b'"',
                b"\n",
            ]
        ),
        max_size=30,
    )
)
def test_multipart_fragments_only_raise_bad_request(chunks: list[bytes]) -> None:
    outcome = _attempt(b"".join(chunks), MP)
    if isinstance(outcome, BadRequestError):
        assert (outcome.status, outcome.reason) in {
            (400, "malformed_multipart"),
            (400, "bad_charset"),
        }
    else:
        assert outcome.kind == ("multipart" if chunks else "empty")


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"SECRETMARKER": NaN}', "application/json"),
        (b"[" * 100 + b'"SECRETMARKER"' + b"]" * 100, "application/json"),
        (b"SECRETMARKER=%zz", FORM),
        (b"SECRETMARKER\xff", "text/plain"),
        (b"--XyZ\r\nSECRETMARKER\r\n\r\nx\r\n--XyZ--", MP),
    ],
)
def test_error_messages_do_not_echo_the_body(raw: bytes, content_type: str) -> None:
    err = _error(raw, content_type)
    assert "SECRETMARKER" not in err.message
    assert "SECRETMARKER" not in str(err)
