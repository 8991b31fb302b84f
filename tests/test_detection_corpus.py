"""The labelled detection corpus: its shape, and detection and false-positive rates as floors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.detection import (
    APART,
    ATTACKS,
    BENIGN,
    Attack,
    Benign,
    CorpusError,
    Evaluation,
    evaluate,
    load_attacks,
    load_benign,
)
from guardrail_authz.payload.detect import DETECTORS

MINIMUM = {"sqli": 40, "xss": 40, "cmdi": 40, "traversal": 40, "ssti": 40, "log4shell": 40}
MINIMUM |= {"deserialization": 25, "ssrf": 25, "crlf": 25, "nosql": 25}
BENIGN_MINIMUM = 600
# Floors: the measured rates in docs/detection.md less about 3 points (one or two attacks per
# class), so a detector that starts missing what it caught fails here. Measured 2026-11: every
# class at 100% but cmdi at 98.3% (misses `x;w`).
DETECTION_FLOOR = {
    "sqli": 0.97,
    "xss": 0.97,
    "cmdi": 0.95,
    "traversal": 0.96,
    "ssti": 0.96,
    "log4shell": 0.96,
    "deserialization": 0.97,
    "ssrf": 0.97,
    "crlf": 0.96,
    "nosql": 0.97,
}
OWN_DETECTOR_FLOOR = dict(DETECTION_FLOOR)
# Ceilings: benign entries a kind may have flagged, the measured count plus one (the kinds are
# small, so a rate would allow several at once); measured: code 2, every other kind 0.
FP_ALLOWED = {"code": 3}
FP_ALLOWED_DEFAULT = 1
FP_OVERALL_CEILING = 0.005  # all kinds but APART (code, rich_text); measured 0.0%
FP_ALL_KINDS_CEILING = 0.006  # measured 0.2%


@pytest.fixture(scope="module")
def attacks() -> list[Attack]:
    return load_attacks()


@pytest.fixture(scope="module")
def benign() -> list[Benign]:
    return load_benign()


@pytest.fixture(scope="module")
def evaluation(attacks: list[Attack], benign: list[Benign]) -> Evaluation:
    return evaluate(attacks, benign)


def test_every_line_is_a_json_object() -> None:
    for path in (ATTACKS, BENIGN):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        lines = text.removesuffix("\n").split("\n")
        assert all(isinstance(json.loads(line), dict) for line in lines), path


def test_every_class_present_with_its_minimum(attacks: list[Attack]) -> None:
    counts = Counter(a.cls for a in attacks)
    assert set(counts) == set(DETECTORS) == set(MINIMUM)
    short = {c: counts[c] for c, n in MINIMUM.items() if counts[c] < n}
    assert not short


def test_raw_and_key_placements_are_used(attacks: list[Attack]) -> None:
    places = Counter((a.cls, a.where) for a in attacks)
    assert places["deserialization", "raw_b64"] >= 8
    assert places["deserialization", "value"] >= 8
    assert places["nosql", "key"] >= 10
    assert places["crlf", "key"] >= 2
    assert all(a.raw() for a in attacks if a.where == "raw_b64")


def test_no_duplicate_payloads(attacks: list[Attack], benign: list[Benign]) -> None:
    attack_dupes = [p for p, n in Counter(a.payload for a in attacks).items() if n > 1]
    benign_dupes = [p for p, n in Counter(b.payload for b in benign).items() if n > 1]
    assert not attack_dupes
    assert not benign_dupes
    assert not {a.payload for a in attacks} & {b.payload for b in benign}


def test_benign_size_and_spread(benign: list[Benign]) -> None:
    kinds = Counter(b.kind for b in benign)
    assert len(benign) >= BENIGN_MINIMUM
    assert len(kinds) >= 20
    assert all(n >= 15 for n in kinds.values()), kinds
    assert set(APART) <= set(kinds)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"class": "sqli", "payload": "x"}', "keys must be"),
        ('{"class": "nope", "payload": "x", "in": "value"}', "unknown class"),
        ('{"class": "sqli", "payload": "x", "in": "header"}', "'in' must be"),
        ('{"class": "sqli", "payload": "", "in": "value"}', "non-empty"),
        ('{"class": "deserialization", "payload": "not base64!", "in": "raw_b64"}', "base64"),
        ('["sqli"]', "JSON object"),
        ("{nope", "not JSON"),
    ],
)
def test_loader_rejects_malformed_attack_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "attacks.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        load_attacks(path)


def test_loader_rejects_malformed_benign_lines(tmp_path: Path) -> None:
    path = tmp_path / "benign.jsonl"
    path.write_text('{"kind": "prose", "payload": "ok"}\n{"kind": "prose"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"benign.jsonl:2: keys must be"):
        load_benign(path)


@pytest.mark.parametrize("cls", DETECTORS)
def test_detection_rate_per_class(evaluation: Evaluation, cls: str) -> None:
    result = evaluation.by_class()[cls]
    missed = [a.payload for a in result.missed]
    assert result.rate() >= DETECTION_FLOOR[cls], missed
    assert result.right_rate() >= OWN_DETECTOR_FLOOR[cls]


def test_false_positive_rate_per_kind(evaluation: Evaluation) -> None:
    over = {
        k.kind: [p for p, _ in k.flagged]
        for k in evaluation.kinds
        if len(k.flagged) > FP_ALLOWED.get(k.kind, FP_ALLOWED_DEFAULT)
    }
    assert not over


def test_false_positive_rate_overall(evaluation: Evaluation) -> None:
    assert evaluation.fp_rate() <= FP_OVERALL_CEILING
    assert evaluation.fp_rate(apart=True) <= FP_ALL_KINDS_CEILING
