"""Normalisation: the decoded variants the detector signatures are matched on."""

from __future__ import annotations

import pytest

from guardrail_authz.payload.detect.normalise import (
    decode,
    needs_normalising,
    normalise,
    strip_sql_comments,
)


@pytest.mark.parametrize(
    "plain",
    ["hello world", "O'Brien's order", "user@example.com", "2024-05-01T12:30:00Z", "", "a+b"],
)
def test_plain_values_are_their_only_variant(plain: str) -> None:
    variants = normalise(plain)
    assert variants == (plain,) or variants[0] == plain
    if "+" not in plain:
        assert variants == (plain,)
        assert not needs_normalising(plain)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("%3Cscript%3E", "<script>"),
        ("%253Cscript%253E", "<script>"),  # double
        ("%25253Cscript%25253E", "<script>"),  # triple
        ("%u003cscript%u003e", "<script>"),  # IIS %u
        ("..%c0%af..%c0%afetc", "../../etc"),  # overlong UTF-8 '/'
        ("%c0%ae%c0%ae/", "../"),  # overlong UTF-8 '.'
        ("&lt;img&gt;", "<img>"),
        ("&#60;&#x3C;&#X3c;", "<<<"),
        ("&#60&#x3C", "<<"),  # no semicolons
        ("&#0000060;", "<"),  # leading zeros
        ("%26lt%3Bscript%26gt%3B", "<script>"),  # entities inside URL encoding
        ("\\u003cscript\\u003e", "<script>"),
        ("\\u{3c}b\\x3e", "<b>"),
        ("a\\r\\nb", "a\r\nb"),
        ("\uff1cscript\uff1e", "<script>"),  # fullwidth
        ("\u2460\u2461\u2466", "127"),  # circled digits
        ("sel\u200bect", "select"),  # zero-width space
        ("a\x00b", "ab"),  # NUL byte
        ("..\u2215..\u2215etc", "../../etc"),  # division slash
        ("/./././etc/./passwd", "/etc/passwd"),
        ("a \t\u00a0 b", "a b"),  # horizontal whitespace collapsed
        ("UNION/**/SELECT", "UNION SELECT"),
        ("/*!50000UNION*/ SELECT", " UNION SELECT"),
    ],
)
def test_decode_undoes_the_evasion(raw: str, decoded: str) -> None:
    assert needs_normalising(raw)
    assert decode(raw) == decoded
    assert decoded in normalise(raw)


def test_decoding_is_bounded() -> None:
    text = "%" + "25" * 6 + "3C"  # six layers of encoding: more than anyone decodes
    assert decode(text) != "<"
    assert decode(text).startswith("%")


def test_line_breaks_survive_whitespace_collapsing() -> None:
    assert decode("a%0d%0aSet-Cookie:%20x") == "a\r\nSet-Cookie: x"


def test_comment_splitting_gets_a_joined_variant() -> None:
    variants = normalise("UN/**/ION SEL/**/ECT")
    assert variants[0] == "UN/**/ION SEL/**/ECT"
    assert "UN ION SEL ECT" in variants
    assert "UNION SELECT" in variants


def test_plus_as_space_only_without_real_spaces() -> None:
    assert "1' OR 1=1" in normalise("1'+OR+1=1")
    assert normalise("1 + 1 = 2") == ("1 + 1 = 2",)


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("a/*x*/b", "a b"),
        ("a/*!12345b*/c", "a b c"),
        ("a/*unterminated", "a/*unterminated"),
        ("/**//**/", "  "),
        ("no comments", "no comments"),
    ],
)
def test_sql_comments(text: str, stripped: str) -> None:
    assert strip_sql_comments(text) == stripped


def test_lone_surrogates_and_bad_utf8_escapes_do_not_raise() -> None:
    assert normalise("\ud800%41")[-1].endswith("A")
    assert "\ufffd" in decode("%ff%fe")
    assert decode("\\u{110000}") == "\\u{110000}"


def test_unterminated_comments_cost_linear_time() -> None:
    text = "/*x" * 200_000  # one comment opens and never closes: the text stays as it is
    assert strip_sql_comments(text) == text
    assert decode("/**/" * 100_000) == " "
