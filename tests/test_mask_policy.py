"""The `mask:` policy section: what it parses to, what it compiles to, and every mistake
reported with its stable code, file, line and field."""

from __future__ import annotations

import json
import textwrap

import pytest

from guardrail_authz.payload.mask import MaskPlan, Style, mask_body
from guardrail_authz.policy.compile_mask import compile_mask
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.parse_mask import DEFAULT_MAX_BYTES, mask_spec
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.source import Where
from guardrail_authz.policy.source_mask import MaskSpec
from guardrail_authz.policy.yamlsrc import load_documents

R = "spec.routes[0]"
M = f"{R}.mask"
Found = tuple[int, str, str]  # line, field, code


def _load(section: str) -> tuple[MaskSpec | None, MaskPlan | None, ErrorSink]:
    """Parse and compile a route whose YAML (line 1: `name: r`) holds `section` from line 2."""
    text = "name: r\n" + textwrap.dedent(section)
    sink = ErrorSink()
    (doc, _), *_ = load_documents(text, "routes.yaml", sink)
    reader = Reader(doc, R, "routes.yaml", sink).mapping("mask")
    if reader is None:
        return None, None, sink
    spec = mask_spec(reader)
    return spec, compile_mask(spec, "shop", sink), sink


def _errors(section: str) -> set[Found]:
    _, _, sink = _load(section)
    assert all(e.file == "routes.yaml" for e in sink.errors)
    return {(e.line, e.field, e.code) for e in sink.errors}


EXAMPLE = """\
mask:
  response: true
  request: false
  fields:
    - {path: "$.customer.email", style: partial, keep: 4}
    - {path: "$..card.number", style: partial}
    - {path: "$.items[*].ssn", style: redact}
  detectors:
    - {detector: card, style: partial}
    - {detector: ssn, style: redact}
    - {detector: email, style: hash, exempt: {roles: [support]}}
    - {name: order-ref, regex: "ORD-[0-9]{8}", style: redact}
  exempt: {principals: [auditor], roles: [admin]}
  compressed: decompress
  maxBytes: 1048576
"""


def test_the_documented_example_parses_and_compiles() -> None:
    spec, plan, sink = _load(EXAMPLE)
    assert not sink, sink.sorted()
    assert spec is not None
    assert plan is not None
    assert (spec.response, spec.request, spec.compressed, spec.max_bytes) == (
        True,
        False,
        "decompress",
        1048576,
    )
    assert spec.fields[0].where == Where("routes.yaml", 6, f"{M}.fields[0].path")
    assert spec.detectors[3].where == Where("routes.yaml", 13, f"{M}.detectors[3].regex")
    assert [r.label for r in plan.fields] == [
        "field:$.customer.email",
        "field:$..card.number",
        "field:$.items[*].ssn",
    ]
    assert [r.label for r in plan.detectors] == [
        "detector:card",
        "detector:ssn",
        "detector:email",
        "detector:order-ref",
    ]
    assert plan.fields[1].style == Style("partial", 4)
    assert plan.scanner is not None
    assert [d.name for d in plan.scanner.detectors] == ["card", "ssn", "email", "order-ref"]
    assert plan.policy == "shop"
    assert plan.exempt("auditor", frozenset())
    assert plan.exempt("bob", frozenset({"admin", "x"}))
    assert not plan.exempt("bob", frozenset({"support"}))
    email = plan.detectors[2].exemption
    assert email is not None
    assert email.applies(None, frozenset({"support"}))
    body = json.dumps(
        {
            "customer": {"email": "dana@example.com"},
            "items": [{"ssn": "123-45-6789"}],
            "note": "ORD-12345678 for ops@example.com",
        }
    ).encode()
    out = mask_body(
        plan,
        body,
        content_type="application/json",
        content_encoding="",
        principal="bob",
        roles=frozenset({"support"}),
        key=b"k",
    )
    assert json.loads(out.body or b"") == {
        "customer": {"email": "****@******e.com"},
        "items": [{"ssn": "[redacted]"}],
        "note": "[redacted] for ops@example.com",  # support sees emails the detector finds
    }


def test_defaults() -> None:
    spec, plan, sink = _load("mask: {detectors: [{detector: ipv4}]}\n")
    assert not sink
    assert spec is not None
    assert plan is not None
    assert (spec.response, spec.request, spec.compressed) == (True, False, "decompress")
    assert spec.max_bytes == plan.max_bytes == DEFAULT_MAX_BYTES
    assert plan.detectors[0].style == Style("redact", 4)
    assert plan.exemption is None
    assert plan.decompress
    assert plan.fields == ()
    _, skip, _ = _load("mask: {request: true, fields: [{path: $.a}], compressed: skip}\n")
    assert skip is not None
    assert (skip.request, skip.response, skip.decompress, skip.scanner) == (True, True, False, None)


def test_no_mask_section_compiles_to_none() -> None:
    assert compile_mask(None, "p", ErrorSink()) is None


@pytest.mark.parametrize(
    ("section", "found"),
    [
        ("mask: {}", (2, M, "mask.empty")),
        ("mask: {fields: [], exempt: {roles: [a]}}", (2, M, "mask.empty")),
        (
            "mask: {response: false, detectors: [{detector: card}]}",
            (2, M, "mask.direction"),
        ),
        ("mask: {detectors: [{detector: card}], colour: red}", (2, f"{M}.colour", "field.unknown")),
        ("mask: [card]", (2, f"{R}.mask", "field.type")),
        ("mask: {fields: [x]}", (2, f"{M}.fields[0]", "field.type")),
        ("mask: {fields: [{style: redact}]}", (2, f"{M}.fields[0]", "field.required")),
        ("mask: {fields: [{path: a.b}]}", (2, f"{M}.fields[0].path", "mask.path")),
        ("mask: {fields: [{path: '$.a[1:2]'}]}", (2, f"{M}.fields[0].path", "mask.path")),
        ("mask: {fields: [{path: $.a, style: blur}]}", (2, f"{M}.fields[0].style", "field.choice")),
        (
            "mask: {fields: [{path: $.a, style: partial, keep: 9}]}",
            (2, f"{M}.fields[0].keep", "field.range"),
        ),
        (
            "mask: {fields: [{path: $.a, style: partial, keep: -1}]}",
            (2, f"{M}.fields[0].keep", "field.range"),
        ),
        (
            "mask: {fields: [{path: $.a, style: hash, keep: 2}]}",
            (2, f"{M}.fields[0].keep", "mask.keep"),
        ),
        (
            "mask: {detectors: [{detector: cards}]}",
            (2, f"{M}.detectors[0].detector", "mask.detector"),
        ),
        (
            "mask: {detectors: [{detector: card, regex: x}]}",
            (2, f"{M}.detectors[0]", "mask.detector"),
        ),
        ("mask: {detectors: [{name: ref}]}", (2, f"{M}.detectors[0]", "mask.detector")),
        ("mask: {detectors: [{style: redact}]}", (2, f"{M}.detectors[0]", "mask.detector")),
        (
            "mask: {detectors: [{name: Ref!, regex: x}]}",
            (2, f"{M}.detectors[0].name", "mask.name"),
        ),
        (
            "mask: {detectors: [{name: email, regex: x}]}",
            (2, f"{M}.detectors[0].name", "mask.name"),
        ),
        (
            "mask: {detectors: [{name: ref, regex: 'ORD-[0-9'}]}",
            (2, f"{M}.detectors[0].regex", "mask.regex"),
        ),
        (
            "mask: {detectors: [{name: ref, regex: '[0-9]*'}]}",
            (2, f"{M}.detectors[0].regex", "mask.regex"),
        ),
        (
            "mask: {detectors: [{detector: card, exempt: {}}]}",
            (2, f"{M}.detectors[0].exempt", "mask.exempt"),
        ),
        (
            "mask: {detectors: [{detector: card}], exempt: {teams: [a]}}",
            (2, f"{M}.exempt.teams", "field.unknown"),
        ),
        (
            "mask: {detectors: [{detector: card}], compressed: maybe}",
            (2, f"{M}.compressed", "field.choice"),
        ),
        ("mask: {detectors: [{detector: card}], maxBytes: 0}", (2, f"{M}.maxBytes", "field.range")),
        (
            "mask: {detectors: [{detector: card}, {detector: card}]}",
            (2, f"{M}.detectors[1]", "mask.duplicate"),
        ),
        (
            "mask: {fields: [{path: $.a}, {path: $.a, style: hash}]}",
            (2, f"{M}.fields[1].path", "mask.duplicate"),
        ),
    ],
)
def test_mask_section_errors(section: str, found: Found) -> None:
    assert found in _errors(section + "\n")


def test_errors_point_at_the_line_of_the_field() -> None:
    section = """\
    mask:
      fields:
        - path: $.ok
        - path: $.a..
          style: partial
        - path: $.b
          keep: 3
      detectors:
        - detector: card
        - name: ref
          regex: "(unclosed"
        - detector: passport
    """
    assert _errors(section) == {
        (5, f"{M}.fields[1].path", "mask.path"),
        (8, f"{M}.fields[2].keep", "mask.keep"),
        (12, f"{M}.detectors[1].regex", "mask.regex"),
        (13, f"{M}.detectors[2].detector", "mask.detector"),
    }


def test_broken_rules_are_left_out_of_the_plan() -> None:
    _, plan, sink = _load(
        "mask: {fields: [{path: $.a}, {path: '$.['}],"
        " detectors: [{name: bad, regex: '('}, {detector: ssn}]}\n"
    )
    assert {e.code for e in sink.errors} == {"mask.path", "mask.regex"}
    assert plan is not None
    assert [r.label for r in plan.fields] == ["field:$.a"]
    assert [r.label for r in plan.detectors] == ["detector:ssn"]
