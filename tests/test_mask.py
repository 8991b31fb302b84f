"""The masking engine: detectors (true positives and near misses), styles, JSON paths,
exemptions, encodings, skip reasons, counts, and a property test of output validity and of
idempotence for the redact and partial styles."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.payload.mask import MaskOutcome, MaskPlan, mask_body, mask_hash, partial
from guardrail_authz.payload.mask_detect import BUILTIN, Scanner, builtin, custom
from guardrail_authz.payload.mask_path import PathError, load_json, parse_path
from guardrail_authz.policy.compile_mask import compile_mask
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.parse_mask import mask_spec
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.yamlsrc import load_documents

KEY = b"test-mask-key"
NOBODY: frozenset[str] = frozenset()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


JWT = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': 'u1'})}.c2lnbmF0dXJl"
NOT_JWT = f"{_b64({'typ': 'JWT'})}.{_b64({'sub': 'u1'})}.c2ln"  # no "alg"


def plan_of(section: str) -> MaskPlan:
    """Parse and compile a `mask:` section (YAML flow mapping text) as the loader does."""
    sink = ErrorSink()
    (doc, _), *_ = load_documents("mask: " + section, "t.yaml", sink)
    reader = Reader(doc, "", "t.yaml", sink).mapping("mask")
    assert reader is not None
    plan = compile_mask(mask_spec(reader), "t", sink)
    assert not sink, sink.sorted()
    assert plan is not None
    return plan


def run(
    plan: MaskPlan,
    body: bytes | Any,
    *,
    ctype: str = "application/json",
    encoding: str = "",
    principal: str | None = "alice",
    roles: frozenset[str] = NOBODY,
    key: bytes = KEY,
) -> MaskOutcome:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return mask_body(
        plan,
        raw,
        content_type=ctype,
        content_encoding=encoding,
        principal=principal,
        roles=roles,
        key=key,
    )


def masked(plan: MaskPlan, doc: Any, **kw: Any) -> Any:
    """The masked document (the input when nothing changed)."""
    out = run(plan, doc, **kw)
    assert out.skipped is None
    return doc if out.body is None else json.loads(out.body)


def found(detector: str, text: str) -> list[str]:
    return [text[s:e] for s, e in builtin(detector).find(text)]


DETECTOR_CASES = [
    ("card", "paid 4111 1111 1111 1111 ok", ["4111 1111 1111 1111"]),
    ("card", "4111-1111-1111-1111", ["4111-1111-1111-1111"]),
    ("card", "5555555555554444", ["5555555555554444"]),
    ("card", "amex 3782 822463 10005", ["3782 822463 10005"]),
    ("card", "2223003122003222 and 6011111111111117", ["2223003122003222", "6011111111111117"]),
    ("card", "4111 1111 1111 1111 12/30", ["4111 1111 1111 1111"]),
    ("card", "4111 1111 1111 1111 123", ["4111 1111 1111 1111"]),  # 4-4-4-4 and 3 digits
    ("card", "4111 1111 1111 1112", []),  # Luhn fails
    ("card", "1234567812345670", []),  # Luhn passes, no card network starts with 1
    ("card", "41111111111111111111", []),  # 20 digits
    ("card", "x4111111111111111 0.4111111111111111", []),  # inside a word, a decimal
    ("ssn", "ssn 123-45-6789.", ["123-45-6789"]),
    ("ssn", "123 45 6789", ["123 45 6789"]),
    ("ssn", "000-12-3456 666-12-3456 900-12-3456", []),  # invalid areas
    ("ssn", "123-00-4567 123-45-0000", []),  # group 00, serial 0000
    ("ssn", "123-45 6789 0123-45-6789 123-45-67890", []),
    ("email", "mail John.Doe+tag@mail.example.co.uk now", ["John.Doe+tag@mail.example.co.uk"]),
    ("email", "'quoted@example.org', (x@y.io)", ["quoted@example.org", "x@y.io"]),
    ("email", "john@localhost @handle a@b ****@example.com user@example.c", []),
    ("phone", "call +44 20 7946 0958 today", ["+44 20 7946 0958"]),
    ("phone", "+1 (555) 234-5678 / (555) 234-5678", ["+1 (555) 234-5678", "(555) 234-5678"]),
    (
        "phone",
        "555.234.5678 1-555-234-5678 +15552345678",
        ["555.234.5678", "1-555-234-5678", "+15552345678"],
    ),
    ("phone", "+49 (0)30 1234567", ["+49 (0)30 1234567"]),
    ("phone", "555-123-4567 155-234-5678", []),  # exchange / area code starting with 1
    ("phone", "+4111111111111111 5552345678 2024-01-15 +05:30 +1 2", []),
    ("phone", "4111 1111 1111 1111", []),  # a card is not a phone number
    ("iban", "to DE89 3704 0044 0532 0130 00 EUR", ["DE89 3704 0044 0532 0130 00"]),
    (
        "iban",
        "GB82WEST12345698765432 FR1420041010050500013M02606",
        ["GB82WEST12345698765432", "FR1420041010050500013M02606"],
    ),
    ("iban", "DE89 3704 0044 0532 0130 01", []),  # wrong check digits
    ("iban", "GB82WEST1234569876543 DE00370400440532013000", []),  # length, check digits 00
    ("ipv4", "from 10.0.0.1, to [192.168.1.255]", ["10.0.0.1", "192.168.1.255"]),
    ("ipv4", "v1.2.3.4 1.2.3.4.5 256.1.1.1 01.2.3.4 1.2.3", []),
    ("ipv6", "at 2001:db8::1 and ::1", ["2001:db8::1", "::1"]),
    (
        "ipv6",
        "2001:0db8:0000:0000:0000:ff00:0042:8329",
        ["2001:0db8:0000:0000:0000:ff00:0042:8329"],
    ),
    ("ipv6", "mapped ::ffff:192.0.2.1", ["::ffff:192.0.2.1"]),
    ("ipv6", "12:30:45 std::vector 00:1A:2B:3C:4D:5E :: 1:2:3:4:5:6:7:8:9", []),
    ("jwt", f"Bearer {JWT}", [JWT]),
    ("jwt", f"{NOT_JWT} eyJhbGciOiJIUzI1NiJ9", []),
    ("api_token", "AKIAIOSFODNN7EXAMPLE ASIAIOSFODNN7EXAMPL", ["AKIAIOSFODNN7EXAMPLE"]),
    ("api_token", "ghp_" + "a1" * 18, ["ghp_" + "a1" * 18]),
    (
        "api_token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopq",
        ["github_pat_11ABCDEFG0123456789_abcdefghijklmnopq"],
    ),
    ("api_token", "xoxb-1234567890-abcdefghij", ["xoxb-1234567890-abcdefghij"]),
    (
        "api_token",
        "sk_live_" + "x" * 24 + " rk_live_" + "y" * 24,
        ["sk_live_" + "x" * 24, "rk_live_" + "y" * 24],
    ),
    ("api_token", "AIza" + "B" * 35, ["AIza" + "B" * 35]),
    ("api_token", "sk_test_" + "x" * 24 + " ghp_" + "a" * 35 + " xAKIAIOSFODNN7EXAMPLE", []),
]


@pytest.mark.parametrize(("detector", "text", "expected"), DETECTOR_CASES)
def test_detector(detector: str, text: str, expected: list[str]) -> None:
    assert found(detector, text) == expected


def test_scanner_merges_overlaps_and_skips() -> None:
    ref, word = custom("ref", re.compile(r"ORD-\d+")), custom("word", re.compile(r"1111 [a-z]+"))
    scanner = Scanner([builtin("phone"), builtin("card"), ref, word])
    texts = ["4111 1111 1111 1111 then", "ref ORD-12 and +44 20 7946 0958", "nothing"]
    result = scanner.scan(texts)
    assert result[0] == [(0, len(texts[0]), 1, True)]  # card and word overlap: one span
    assert [d for _, _, d, _ in result[1]] == [2, 0]
    assert 2 not in result
    assert scanner.scan(texts, frozenset({0, 2, 3})) == {0: [(0, 19, 1, False)]}


def test_quiet_detectors_are_judged_on_the_raw_text() -> None:
    scanner = Scanner([builtin("email"), builtin("card")])
    assert scanner.skip_quiet(b'{"a": "no address, no card"}', frozenset()) == {0, 1}
    assert scanner.skip_quiet(b'{"a": "x@example.com"}', frozenset()) == frozenset()
    # A trigger of a skipped detector does not count; one of another does.
    assert scanner.skip_quiet(b'{"a": "x@example.com"}', frozenset({0})) == {0, 1}
    assert scanner.skip_quiet(b'{"a": "4111 1111 1111 1111"}', frozenset({0})) == {0}
    with_custom = Scanner([builtin("email"), custom("ref", re.compile(r"ORD-\d+"))])
    assert with_custom.skip_quiet(b'{"a": "nothing"}', frozenset()) == frozenset()  # custom: runs


# -- styles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keep", "expected"),
    [
        ("4111 1111 1111 1111", 4, "**** **** **** 1111"),
        ("123-45-6789", 4, "***-**-6789"),
        ("+44 20 7946 0958", 2, "+** ** **** **58"),
        ("john@example.com", 4, "****@******e.com"),
        ("secret", 0, "******"),
        ("1234", 4, "**34"),  # never more than half
        ("Zoë Smith", 4, "*** *mith"),
        ("--", 4, "--"),
        ("*****1234", 4, "*****1234"),  # already masked: unchanged
    ],
)
def test_partial(text: str, keep: int, expected: str) -> None:
    assert partial(text, keep) == expected
    assert partial(expected, keep) == expected


def test_hash_is_keyed_hmac_and_stable() -> None:
    mac = hmac.new(KEY, b"x@example.com", hashlib.sha256).hexdigest()
    assert mask_hash(KEY, "x@example.com") == "hmac:" + mac[:16]
    plan = plan_of(
        "{fields: [{path: $.e, style: hash}], detectors: [{detector: card, style: hash}]}"
    )
    doc = {"e": "x@example.com", "n": "4111 1111 1111 1111", "m": "4111-1111-1111-1111"}
    first, again = masked(plan, doc), masked(plan, doc)
    assert first == again
    assert first["e"] == mask_hash(KEY, "x@example.com")
    assert first["n"] == first["m"] == mask_hash(KEY, "4111111111111111")  # separators dropped
    assert masked(plan, doc, key=b"other")["e"] != first["e"]


def test_redact_replaces_a_whole_field_but_only_the_match_in_text() -> None:
    plan = plan_of("{fields: [{path: $.ssn}], detectors: [{detector: email}]}")
    out = masked(plan, {"ssn": "123-45-6789", "note": "write to a@example.com, thanks"})
    assert out == {"ssn": "[redacted]", "note": "write to [redacted], thanks"}


def test_numbers_are_masked_as_strings_and_other_numbers_keep_their_text() -> None:
    plan = plan_of("{fields: [{path: $.card, style: partial}, {path: $.pin}, {path: $.flag}]}")
    body = (
        b'{"card": 4111111111111111, "pin": 12.50, "flag": true, "none": null, '
        b'"price": 1.10, "big": 1E400, "n": -0.0, "i": 12345678901234567890}'
    )
    out = run(plan, body)
    assert out.body == (
        b'{"card":"************1111","pin":"[redacted]","flag":true,"none":null,'
        b'"price":1.10,"big":1E400,"n":-0.0,"i":12345678901234567890}'
    )
    assert out.counts == {"field:$.card": 1, "field:$.pin": 1}


def test_a_selected_container_masks_every_string_and_number_inside() -> None:
    plan = plan_of("{fields: [{path: $.card, style: partial, keep: 2}]}")
    doc = {"card": {"number": "4111111111111111", "cvv": 123, "valid": True, "tags": ["gold"]}}
    assert masked(plan, doc) == {
        "card": {"number": "**************11", "cvv": "**3", "valid": True, "tags": ["**ld"]}
    }


# -- paths --------------------------------------------------------------------------------


def test_paths_select_members_indexes_wildcards_and_descendants() -> None:
    doc = {
        "a": {"b": "x", "c": [{"x": "1"}, {"x": "2"}, {"y": "3"}]},
        "x": "top",
        "odd key": "o",
        "list": ["p", "q", "r"],
    }
    cases: dict[str, list[Any]] = {
        "$.a.b": ["x"],
        "$..x": ["top", "1", "2"],
        "$.a.c[*].x": ["1", "2"],
        "$.a.c[0].x": ["1"],
        "$.list[-1]": ["r"],
        "$['odd key']": ["o"],
        '$["a"]["b"]': ["x"],
        "$.a.*": ["x", [{"x": "1"}, {"x": "2"}, {"y": "3"}]],
        "$.missing.x": [],
        "$.list[7]": [],
        "$.a.b.c": [],
    }
    for text, expected in cases.items():
        doc_copy = load_json(json.dumps(doc).encode())
        got = [c[k] for c, k in parse_path(text).select(doc_copy.holder)]
        assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, expected)), text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.b", "starts with '$'"),
        ("$.", "member name"),
        ("$.a[", "not supported"),
        ("$.a[1:2]", "slices"),
        ("$.a[?(@.x)]", "filters"),
        ("$.a['x]", "unterminated"),
        ("$.a b", "offset 3"),
        ("$" + ".a" * 40, "at most"),
    ],
)
def test_path_errors(text: str, message: str) -> None:
    with pytest.raises(PathError, match=re.escape(message)):
        parse_path(text)


def test_nested_selections_mask_once_and_the_first_rule_wins() -> None:
    plan = plan_of(
        "{fields: [{path: '$..a', style: partial}, {path: $.a.a, style: hash}],"
        " detectors: [{detector: ssn}]}"
    )
    out = run(plan, {"a": {"a": "123-45-6789", "b": "xyz9"}, "z": "123-45-6789"})
    assert json.loads(out.body or b"") == {
        "a": {"a": "***-**-6789", "b": "**z9"},
        "z": "[redacted]",
    }  # a field rule's values are never scanned again by the detectors
    assert out.counts == {"field:$..a": 2, "detector:ssn": 1}


def test_one_descendant_rule_masks_a_value_it_reaches_twice_once() -> None:
    # `$..a` selects the outer "a" (every string inside it) and the inner "a" itself
    plan = plan_of("{fields: [{path: '$..a', style: hash}]}")
    out = run(plan, {"a": {"a": "secret", "b": ["x"]}})
    assert json.loads(out.body or b"") == {
        "a": {"a": mask_hash(KEY, "secret"), "b": [mask_hash(KEY, "x")]}
    }
    assert out.counts == {"field:$..a": 2}


# -- exemptions ---------------------------------------------------------------------------


def test_rule_and_plan_exemptions() -> None:
    plan = plan_of(
        "{detectors: [{detector: email, exempt: {roles: [support]}}, {detector: ssn}],"
        " exempt: {principals: ['audit-*'], roles: [admin]}}"
    )
    doc = {"e": "a@example.com", "s": "123-45-6789"}
    assert masked(plan, doc) == {"e": "[redacted]", "s": "[redacted]"}
    assert masked(plan, doc, roles=frozenset({"support"})) == {
        "e": "a@example.com",
        "s": "[redacted]",
    }
    assert plan.exempt("audit-eu", NOBODY)
    assert plan.exempt(None, frozenset({"admin"}))
    assert not plan.exempt(None, NOBODY)
    assert run(plan, doc, principal="audit-eu").skipped == "exempt"
    only_email = plan_of("{detectors: [{detector: email, exempt: {principals: [bob]}}]}")
    assert run(only_email, doc, principal="bob") == MaskOutcome(None, {}, "exempt")


# -- bodies, encodings, skips -------------------------------------------------------------

EMAIL_PLAN = "{detectors: [{detector: email}], maxBytes: 1048576}"
DOC = {"user": {"email": "a@example.com", "name": "café Zoë 山田"}, "n": [1, 2.5, None]}
MASKED = '{"user":{"email":"[redacted]","name":"café Zoë 山田"},"n":[1,2.5,null]}'.encode()


def test_output_is_compact_utf8_in_key_order_with_counts() -> None:
    out = run(plan_of(EMAIL_PLAN), DOC)
    assert out == MaskOutcome(MASKED, {"detector:email": 1}, None)


def test_unchanged_bodies_pass_through() -> None:
    assert run(plan_of(EMAIL_PLAN), {"a": "nothing here"}) == MaskOutcome(None, {}, None)


@pytest.mark.parametrize(
    ("ctype", "reason"),
    [
        ("text/plain", "not_json"),
        ("application/xml", "not_json"),
        ("application/json; charset=latin-1", "charset"),
        ("", "not_json"),
    ],
)
def test_non_json_bodies_are_skipped(ctype: str, reason: str) -> None:
    assert run(plan_of(EMAIL_PLAN), DOC, ctype=ctype) == MaskOutcome(None, {}, reason)


def test_json_suffix_and_utf8_charset_are_masked() -> None:
    for ctype in ("application/problem+json", 'Application/JSON; charset="UTF-8"'):
        assert run(plan_of(EMAIL_PLAN), DOC, ctype=ctype).body == MASKED


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b'{"email": "a@example.com"', "malformed_json"),
        (b'{"email": "a@example.com"} x', "malformed_json"),
        (b'{"email": "a@example.com", "n": NaN}', "malformed_json"),
        (b'{"email": "a@example.com\xff"}', "malformed_json"),
        (b"[" * 100_000 + b'"a@example.com"' + b"]" * 100_000, "too_deep"),
    ],
)
def test_bad_bodies_pass_through(body: bytes, reason: str) -> None:
    assert run(plan_of(EMAIL_PLAN), body) == MaskOutcome(None, {}, reason)


def test_escaped_characters_are_read_as_what_they_spell() -> None:
    plan = plan_of("{fields: [{path: $.email, style: partial}], detectors: [{detector: email}]}")
    out = run(plan, b'{"\\u0065mail": "abcdefgh", "note": "a\\u0040example.com"}')
    assert out.body == b'{"email":"****efgh","note":"[redacted]"}'
    assert run(plan, b'{"mail": "abcdefgh", "note": "a at example.com"}').body is None


def test_lone_surrogates_give_valid_ascii_json() -> None:
    out = run(plan_of(EMAIL_PLAN), b'{"a": "\\ud800 a@example.com"}')
    assert out.body == b'{"a":"\\ud800 [redacted]"}'


def test_size_limit() -> None:
    plan = plan_of("{detectors: [{detector: email}], maxBytes: 100}")
    assert run(plan, {"e": "a@example.com", "pad": "x" * 100}).skipped == "too_large"
    assert run(plan, {"e": "a@example.com"}).counts == {"detector:email": 1}


@pytest.mark.parametrize(
    ("encoding", "pack", "unpack"),
    [
        ("gzip", gzip.compress, gzip.decompress),
        ("x-gzip", gzip.compress, gzip.decompress),
        (" GZIP ", lambda b: gzip.compress(b[:20]) + gzip.compress(b[20:]), gzip.decompress),
        ("deflate", zlib.compress, zlib.decompress),
        (
            "deflate",
            lambda b: zlib.compress(b, wbits=-15),
            lambda b: zlib.decompress(b, wbits=-15),  # raw deflate stays raw
        ),
    ],
)
def test_compressed_round_trip(encoding: str, pack: Any, unpack: Any) -> None:
    out = run(plan_of(EMAIL_PLAN), pack(json.dumps(DOC).encode()), encoding=encoding)
    assert out.skipped is None
    assert unpack(out.body) == MASKED


def test_compressed_skip_modes() -> None:
    body = gzip.compress(json.dumps(DOC).encode())
    skip = plan_of("{detectors: [{detector: email}], compressed: skip}")
    assert run(skip, body, encoding="gzip").skipped == "compressed"
    plan = plan_of(EMAIL_PLAN)
    assert run(plan, body, encoding="br").skipped == "unsupported_encoding"
    assert run(plan, body, encoding="gzip, br").skipped == "unsupported_encoding"
    assert run(plan, body[:-9], encoding="gzip").skipped == "bad_encoding"  # truncated
    assert run(plan, body + b"junk", encoding="gzip").skipped == "bad_encoding"
    assert run(plan, b"not deflate at all", encoding="deflate").skipped == "bad_encoding"


def test_a_gzip_bomb_is_refused_quickly_without_inflating_it() -> None:
    member = gzip.compress(b" " * (1 << 20), compresslevel=9)  # 1 MiB of spaces, ~1 KiB
    bomb = gzip.compress(b'{"a": "') + member * 512  # 512 MiB when inflated, ~0.5 MiB sent
    plan = plan_of("{detectors: [{detector: email}], maxBytes: 1048576}")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        out = run(plan, bomb, encoding="gzip")
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == MaskOutcome(None, {}, "too_large")
    assert elapsed < 0.5
    assert peak < 4 * 1048576


def test_internal_errors_become_an_outcome(caplog: pytest.LogCaptureFixture) -> None:
    plan = plan_of(EMAIL_PLAN)
    not_bytes: Any = 42  # a caller's mistake: it has no length
    out = mask_body(
        plan,
        not_bytes,
        content_type="application/json",
        content_encoding="",
        principal=None,
        roles=NOBODY,
        key=KEY,
    )
    assert out == MaskOutcome(None, {}, "error")
    assert "masking failed" in caplog.text


def test_counts_per_rule() -> None:
    plan = plan_of(
        "{fields: [{path: '$.items[*].ssn'}],"
        " detectors: [{detector: card, style: partial}, {name: order-ref, regex: 'ORD-[0-9]{8}'}]}"
    )
    doc = {
        "items": [{"ssn": "123-45-6789"}, {"ssn": "987-65-4321"}, {"other": 1}],
        "notes": ["ORD-12345678 paid 4111 1111 1111 1111", "ORD-87654321", "ORD-1"],
    }
    out = run(plan, doc)
    assert out.counts == {"field:$.items[*].ssn": 2, "detector:card": 1, "detector:order-ref": 2}
    assert json.loads(out.body or b"")["notes"] == [
        "[redacted] paid **** **** **** 1111",
        "[redacted]",
        "ORD-1",
    ]


# -- properties ---------------------------------------------------------------------------

SAMPLES = [
    "4111 1111 1111 1111", "5555555555554444", "123-45-6789", "a.b@example.com", "x@y.io",
    "+44 20 7946 0958", "(555) 234-5678", "DE89 3704 0044 0532 0130 00", "10.0.0.1",
    "2001:db8::1", "fe80::", "::1", JWT, "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a" * 36,
    "[redacted]", "****", "1.2.3.4.5", "0.5", "café", "\n", "\\", '"', "1-555-234-5678",
    "123 45 6789", "192.168.1.255", "::ffff:192.0.2.1", "GB82WEST12345698765432", "eyJ",
    "xoxb-1234567890-abcdefghij", "3782 822463 10005", "ORD-12345678",
]  # fmt: skip
SEPARATORS = ["", " ", "-", ".", ":", "+", "(", ")", "[", "]", "@", "/", ",", "x", "1"]
texts = st.lists(
    st.sampled_from(SAMPLES) | st.sampled_from(SEPARATORS) | st.text(max_size=6), max_size=6
).map("".join)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
json_docs = st.recursive(
    scalars | texts,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "card", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)
STYLED = [
    plan_of(
        f"{{fields: [{{path: '$..card', style: {style}}}, {{path: '$.a[0]', style: {style}}}],"
        " detectors: ["
        + ", ".join(f"{{detector: {name}, style: {style}}}" for name in BUILTIN)
        + "]}"
    )
    for style in ("redact", "partial")
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_docs, which=st.integers(0, 1))
def test_masking_gives_valid_json_and_a_second_pass_changes_nothing(doc: Any, which: int) -> None:
    plan = STYLED[which]
    first = run(plan, doc)
    assert first.skipped is None
    if first.body is None:
        return
    json.loads(first.body)
    again = run(plan, first.body)
    assert again == MaskOutcome(None, {}, None), (first.body, again)
