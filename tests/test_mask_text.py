"""Masking reads string values out of the written JSON text: the two ways to them (only the
strings a trigger fired in, or the whole text split) mask alike; keys, escaped quotes, values
a field rule masked, trigger floods, and what orjson refuses to write."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.payload import mask_path
from guardrail_authz.payload.mask import MaskOutcome, MaskPlan, mask_body
from guardrail_authz.payload.mask_detect import BUILTIN, Scanner
from guardrail_authz.payload.mask_path import FIELD, dump, load_json, parse_path
from guardrail_authz.payload.mask_text import HitValues, SplitValues, split
from tests.test_mask import KEY, json_docs, plan_of

ALL_BUILTINS = "[" + ", ".join(f"{{detector: {n}, style: partial}}" for n in BUILTIN) + "]"
PLAN = plan_of(f"{{fields: [{{path: '$..card', style: hash}}], detectors: {ALL_BUILTINS}}}")


class _Flooded(Scanner):
    """A scanner whose triggers always flood: mask_body then splits the whole text."""

    def hits(self, data: bytes) -> list[int] | None:
        return None


def _split_always(plan: MaskPlan) -> MaskPlan:
    assert plan.scanner is not None
    return dataclasses.replace(plan, scanner=_Flooded(plan.scanner.detectors))


def _run(plan: MaskPlan, body: bytes) -> MaskOutcome:
    return mask_body(
        plan, body, content_type="application/json", content_encoding="", principal="p",
        roles=frozenset(), key=KEY,
    )  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_docs)
def test_the_strings_a_trigger_fired_in_mask_as_the_whole_split_text_does(doc: Any) -> None:
    body = json.dumps({"card": doc, "x": doc, "note": "x@example.com"}).encode()
    assert _run(PLAN, body) == _run(_split_always(PLAN), body)


def test_a_value_holding_a_nul_is_masked_and_so_are_the_others_of_its_detector() -> None:
    # "a" and "c" hold cards only (masked in one pass over the values joined by NUL, which
    # "a"'s own NUL would throw out of step: they go value by value instead); "b" holds a card
    # and an address, which the card and e-mail triggers share.
    body = json.dumps({
        "a": "4111 1111 1111 1111\u0000", "b": "5500-0000-0000-0004 x@example.com",
        "c": "card 378282246310005",
    }).encode()  # fmt: skip
    out = _run(PLAN, body)
    assert out == _run(_split_always(PLAN), body)
    assert out.counts == {"detector:card": 3, "detector:email": 1}
    assert out.body == (
        b'{"a":"**** **** **** 1111\\u0000","b":"****-****-****-0004 *@******e.com",'
        b'"c":"card ***********0005"}'
    )


def test_a_redact_rule_replaces_in_one_pass_and_a_nul_sends_its_values_one_by_one() -> None:
    plan = plan_of("{detectors: [{detector: ssn, style: redact}, {detector: ipv4, style: redact}]}")
    plain = json.dumps({"a": "ssn 123-45-6789", "b": "from 10.1.2.3 and 10.9.8.7"}).encode()
    out = _run(plan, plain)
    assert out.body == b'{"a":"ssn [redacted]","b":"from [redacted] and [redacted]"}'
    assert out.counts == {"detector:ssn": 1, "detector:ipv4": 2}
    nul = json.dumps({"a": "123-45-6789\u0000", "b": "234-56-7890 or 000-12-3456"}).encode()
    out = _run(plan, nul)
    assert out == _run(_split_always(plan), nul)
    assert out.body == b'{"a":"[redacted]\\u0000","b":"[redacted] or 000-12-3456"}'


def test_a_match_across_two_values_masks_nothing_in_one_pass() -> None:
    # no built-in matches a NUL; a finder that did would join two values into one
    data = b'{"a":"x1","b":"y2"}'
    hits = [(data.index(b"x1") + 2) << 16, (data.index(b"y2") + 2) << 16]
    strings = HitValues(data, b"\x7fmark", hits)
    assert strings.texts([0, 1]) == ["x1", "y2"]

    def across(text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]  # "x1\0y2" whole

    assert strings.mask_joined([0, 1], across, lambda _piece: "*") is None
    assert strings.result() == data  # nothing noted
    assert strings.mask_joined([0, 1], lambda t: [(0, 1), (3, 4)], str.upper) == 2
    assert strings.result() == b'{"a":"X1","b":"Y2"}'


def test_overlapping_matches_of_one_detector_are_merged_as_in_the_split_text() -> None:
    # two addresses sharing "x.comx'q" (the first one's domain, the second one's local part)
    body = json.dumps({"a": "mail ann@x.comx'q@e.org now", "b": "bob@example.com"}).encode()
    out = _run(PLAN, body)
    assert out == _run(_split_always(PLAN), body)
    assert out.body == b'{"a":"mail ***@*.****\'*@*.*** now","b":"***@******e.com"}'
    assert out.counts == {"detector:email": 2}


def test_keys_are_never_masked() -> None:
    body = (
        b'{"x@example.com": "x@example.com", "4111 1111 1111 1111": {"n": "+44 20 7946 0958"},'
        b' "a": ["10.1.2.3", {"10.1.2.3": 1}]}'
    )
    expected = (
        b'{"x@example.com":"*@******e.com","4111 1111 1111 1111":{"n":"+** ** **** 0958"},'
        b'"a":["**.*.2.3",{"10.1.2.3":1}]}'
    )
    counts = {"detector:email": 1, "detector:phone": 1, "detector:ipv4": 1}
    assert _run(PLAN, body) == MaskOutcome(expected, counts)
    assert _run(_split_always(PLAN), body) == MaskOutcome(expected, counts)


def test_escaped_quotes_and_backslashes_stay_where_they_were() -> None:
    body = json.dumps({
        "a": 'say "x@example.com" twice\\',
        'b"\\': "c:\\",
        "c": '\\"+44 20 7946 0958"',
        "d": "\\\\",
    }).encode()  # fmt: skip
    out = _run(PLAN, body)
    assert json.loads(out.body or b"") == {
        "a": 'say "*@******e.com" twice\\',
        'b"\\': "c:\\",
        "c": '\\"+** ** **** 0958"',
        "d": "\\\\",
    }
    assert out.counts == {"detector:email": 1, "detector:phone": 1}


def test_split_reads_escaped_quotes_as_part_of_the_string() -> None:
    text = json.dumps({"a\\": 'x"y\\', "b": ['"', "\\\\"]}, separators=(",", ":"))
    pieces = split(text)
    assert pieces[1::2] == ["a\\\\", 'x\\"y\\\\', "b", '\\"', "\\\\\\\\"]
    assert '"'.join(pieces) == text


def test_a_trigger_flood_still_masks_every_value() -> None:
    body = json.dumps({"a": "+1" * 20_000, "b": "mail x@example.com", "c": "+44 20 7946 0958"})
    assert PLAN.scanner is not None
    assert PLAN.scanner.hits(body.encode()) is None  # more matches than one scan maps
    out = _run(PLAN, body.encode())
    assert json.loads(out.body or b"")["b"] == "mail *@******e.com"
    assert out.counts == {"detector:email": 1, "detector:phone": 1}


def test_values_a_field_rule_masked_are_not_scanned_again() -> None:
    plan = plan_of(
        "{fields: [{path: $.a, style: hash}], detectors: [{name: h, regex: 'hmac:[0-9a-f]+'}]}"
    )
    out = _run(plan, b'{"a": "secret", "b": "hmac:0123abcd"}')
    doc = json.loads(out.body or b"")
    assert doc["a"].startswith("hmac:")
    assert doc["b"] == "[redacted]"
    assert out.counts == {"field:$.a": 1, "detector:h": 1}


@pytest.mark.parametrize("ways", ["hits", "split"])
def test_marked_values_and_keys_are_left_out(ways: str) -> None:
    doc = load_json(b'{"a": "x@example.com", "b": "y@example.com", "z@example.com": 1}')
    doc.holder[0]["a"] = doc.mark + FIELD + "x@example.com"
    data, _ = dump(doc)
    assert PLAN.scanner is not None
    hits = PLAN.scanner.hits(data)
    assert hits is not None
    if ways == "hits":
        values = HitValues(data, doc.mark.encode(), hits).values
    else:
        found = SplitValues(data, doc.mark)
        values = [v for i, v in enumerate(found.values) if found.keep(i)]
    assert values == ["y@example.com"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (  # integers beyond 64 bits
            b'{"i": 123456789012345678901234567890, "e": "x@example.com"}',
            b'{"i":123456789012345678901234567890,"e":"*@******e.com"}',
        ),
        (  # more levels than orjson writes
            b"[" * 300 + b'"x@example.com"' + b"]" * 300,
            b"[" * 300 + b'"*@******e.com"' + b"]" * 300,
        ),
        (  # lone surrogates
            b'{"s": "\\udc00", "e": "x@example.com"}',
            b'{"s":"\\udc00","e":"*@******e.com"}',
        ),
        (  # exponents as the body wrote them (repr and orjson write them differently)
            b'{"a": 1e+16, "b": 1E5, "c": 1.5e-07, "d": 2.5, "e": "x@example.com"}',
            b'{"a":1e+16,"b":1E5,"c":1.5e-07,"d":2.5,"e":"*@******e.com"}',
        ),
    ],
)
def test_what_orjson_refuses_or_writes_differently_comes_out_as_written(
    body: bytes, expected: bytes
) -> None:
    assert _run(PLAN, body).body == expected


def test_a_path_needs_every_plain_member_name_in_the_body() -> None:
    assert parse_path("$..card.number").hints == (b'"card"', b'"number"')
    assert parse_path("$['a b'].c[0]").hints == (b'"c"',)
    plan = plan_of("{fields: [{path: '$..card.number', style: redact}]}")
    assert _run(plan, b'{"number": 1, "cards": {"number": 2}}') == MaskOutcome(None, {})
    assert _run(plan, b'{"card": {"number": 2}}').body == b'{"card":{"number":"[redacted]"}}'


NUMBER = r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?"


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.from_regex(NUMBER, fullmatch=True), min_size=1, max_size=5))
def test_every_number_is_written_back_as_the_body_wrote_it(numbers: list[str]) -> None:
    # orjson parses the bodies whose numbers all read back as written, json the others
    body = ("[" + ", ".join(numbers) + ', "x@example.com"]').encode()
    out = _run(PLAN, body).body
    expected = ",".join("0" if n == "-0" else n for n in numbers)  # -0 is the integer 0
    assert out == f'[{expected},"*@******e.com"]'.encode()


def test_the_number_check_compiles_with_the_policy_not_on_the_first_body() -> None:
    mask_path._inexact.cache_clear()
    plan = plan_of("{detectors: [{detector: email}]}")
    assert mask_path._inexact.cache_info().currsize == 1  # compiled by compile_mask
    assert _run(plan, b'{"a": "x@example.com"}').body == b'{"a":"[redacted]"}'
    assert mask_path._inexact.cache_info().misses == 1
