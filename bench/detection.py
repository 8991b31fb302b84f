"""`python -m bench.detection`: the labelled corpus through every detector; docs/detection.md."""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import functools
import json
import platform
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import docsection
from guardrail_authz.payload.detect import DETECTORS, Hit, Inspector, inspector

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
ATTACKS = CORPUS / "attacks.jsonl"
BENIGN = CORPUS / "benign.jsonl"
DOC = ROOT / "docs" / "detection.md"
START = (
    "<!-- detection:results:start (written by `python -m bench.detection`; "
    "edits below are lost) -->"
)
END = "<!-- detection:results:end -->"
FIELD = "body.q"
QUERY_FIELD = "query.q"
PLACES = ("value", "key", "raw_b64")
# Kinds whose text is code or markup: a WAF legitimately flags some of it, so their false
# positives are reported apart from the overall figure.
APART = ("code", "rich_text")


class CorpusError(ValueError):
    """A corpus line that is not what the evaluation expects."""


@dataclass(frozen=True, slots=True)
class Attack:
    """One labelled attack: the detector that should catch it and where it is placed."""

    cls: str
    payload: str
    where: str

    def raw(self) -> bytes:
        """The decoded bytes of a `raw_b64` entry."""
        return base64.b64decode(self.payload, validate=True)


@dataclass(frozen=True, slots=True)
class Benign:
    """One benign value and the kind of traffic it stands for."""

    kind: str
    payload: str


@dataclass(frozen=True, slots=True)
class ClassResult:
    """How one attack class fared: caught at all, caught by its own detector, and the misses.

    `right` counts attacks caught by an inspector with only the class's detector enabled (a scan
    reports one hit per value, the first detector in DETECTORS order, so with all of them
    enabled another class's hit can hide it); `in_query` counts those caught, by any detector,
    when the value travels as a query parameter instead of in the body.
    """

    cls: str
    total: int
    detected: int
    right: int
    in_query: int
    fired: tuple[tuple[str, int], ...]
    missed: tuple[Attack, ...]
    wrong_only: tuple[tuple[Attack, tuple[str, ...]], ...]

    def rate(self) -> float:
        """Share detected by any detector."""
        return self.detected / self.total if self.total else 0.0

    def right_rate(self) -> float:
        """Share detected by the class's own detector."""
        return self.right / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class KindResult:
    """How one benign kind fared: the entries that tripped a detector and which one."""

    kind: str
    total: int
    flagged: tuple[tuple[str, tuple[Hit, ...]], ...]

    def rate(self) -> float:
        """Share of the kind's entries flagged by any detector."""
        return len(self.flagged) / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The corpus through all detectors: per class, per kind, and the scan cost."""

    classes: tuple[ClassResult, ...]
    kinds: tuple[KindResult, ...]
    scans: int
    seconds: float

    def by_class(self) -> dict[str, ClassResult]:
        """Results keyed by attack class."""
        return {c.cls: c for c in self.classes}

    def by_kind(self) -> dict[str, KindResult]:
        """Results keyed by benign kind."""
        return {k.kind: k for k in self.kinds}

    def fp_rate(self, *, apart: bool = False) -> float:
        """False-positive share over all kinds, or (apart=False) over those not in APART."""
        kinds = [k for k in self.kinds if apart or k.kind not in APART]
        total = sum(k.total for k in kinds)
        return sum(len(k.flagged) for k in kinds) / total if total else 0.0


def _lines(path: Path) -> list[tuple[int, dict[str, object]]]:
    out: list[tuple[int, dict[str, object]]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path.name}:{n}: not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{path.name}:{n}: not a JSON object")
        out.append((n, row))
    return out


def _text(path: Path, n: int, row: dict[str, object], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise CorpusError(f"{path.name}:{n}: {key!r} must be a non-empty string")
    return value


def load_attacks(path: Path = ATTACKS) -> list[Attack]:
    """Parse and check attacks.jsonl (known class and place, raw entries valid base64)."""
    out: list[Attack] = []
    for n, row in _lines(path):
        if set(row) != {"class", "payload", "in"}:
            raise CorpusError(f"{path.name}:{n}: keys must be class, payload, in")
        attack = Attack(
            _text(path, n, row, "class"), _text(path, n, row, "payload"), _text(path, n, row, "in")
        )
        if attack.cls not in DETECTORS:
            raise CorpusError(f"{path.name}:{n}: unknown class {attack.cls!r}")
        if attack.where not in PLACES:
            raise CorpusError(f"{path.name}:{n}: 'in' must be one of {', '.join(PLACES)}")
        if attack.where == "raw_b64":
            try:
                attack.raw()
            except binascii.Error as exc:
                raise CorpusError(f"{path.name}:{n}: raw_b64 payload is not base64") from exc
        out.append(attack)
    return out


def load_benign(path: Path = BENIGN) -> list[Benign]:
    """Parse and check benign.jsonl."""
    out: list[Benign] = []
    for n, row in _lines(path):
        if set(row) != {"kind", "payload"}:
            raise CorpusError(f"{path.name}:{n}: keys must be kind, payload")
        out.append(Benign(_text(path, n, row, "kind"), _text(path, n, row, "payload")))
    return out


def _place(insp: Inspector, attack: Attack, field: str = FIELD) -> list[Hit]:
    """Scan one attack where it travels: a string value, an object key or the raw body bytes."""
    if attack.where == "key":
        return insp.scan_keys([(field, attack.payload)])
    if attack.where == "raw_b64":
        return insp.scan_raw("body", attack.raw())
    return insp.scan([(field, attack.payload)])


def _timed(clock: list[float], scan: Callable[[], list[Hit]]) -> list[Hit]:
    t0 = time.perf_counter()
    hits = scan()
    clock.append(time.perf_counter() - t0)
    return hits


def _class_result(cls: str, entries: Sequence[Attack], clock: list[float]) -> ClassResult:
    everything = inspector(frozenset(DETECTORS))
    fired: Counter[str] = Counter()
    missed: list[Attack] = []
    wrong: list[tuple[Attack, tuple[str, ...]]] = []
    detected = right = in_query = 0
    for a in entries:
        hits = _timed(clock, functools.partial(_place, everything, a))
        names = tuple(sorted({h.detector for h in hits}))
        fired.update(names)
        in_query += bool(_place(everything, a, QUERY_FIELD))
        if not names:
            missed.append(a)
            continue
        detected += 1
        # the own-detector inspector is built (compiled) only when another detector won
        if cls in names or _place(inspector(frozenset({cls})), a):
            right += 1
        else:
            wrong.append((a, names))
    return ClassResult(
        cls,
        len(entries),
        detected,
        right,
        in_query,
        tuple(sorted(fired.items(), key=lambda kv: (-kv[1], kv[0]))),
        tuple(missed),
        tuple(wrong),
    )


def evaluate(attacks: Sequence[Attack], benign: Sequence[Benign]) -> Evaluation:
    """Run the attacks and benign values through the detectors (see docs/detection.md)."""
    everything = inspector(frozenset(DETECTORS))
    clock: list[float] = []
    classes = tuple(
        _class_result(cls, [a for a in attacks if a.cls == cls], clock) for cls in DETECTORS
    )
    flagged: dict[str, list[tuple[str, tuple[Hit, ...]]]] = {}
    totals: Counter[str] = Counter()
    for b in benign:
        totals[b.kind] += 1
        hits = _timed(clock, functools.partial(everything.scan, [(FIELD, b.payload)]))
        found = flagged.setdefault(b.kind, [])
        if hits:
            found.append((b.payload, tuple(hits)))
    kinds = tuple(KindResult(k, totals[k], tuple(flagged[k])) for k in sorted(totals))
    return Evaluation(classes, kinds, len(clock), sum(clock))


def _shown(text: str, limit: int = 160) -> str:
    """Text as Markdown inline code, control and invisible characters escaped, long ones cut."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif cat[0] in "CZ" and ch != " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    shown = "".join(out)
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    run = longest = 0
    for ch in shown:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\x00": "\\0"}


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _hits(hits: Sequence[Hit]) -> str:
    seen = sorted({f"{h.detector}:{h.signature}" for h in hits})
    return ", ".join(seen)


def _class_table(ev: Evaluation) -> list[str]:
    lines = [
        "### Detection per attack class",
        "",
        "| class | attacks | detected (any detector) | by its own detector "
        f"| any, as `{QUERY_FIELD}` | detector reported (attacks) |",
        "|---|---|---|---|---|---|",
    ]
    for c in ev.classes:
        fired = ", ".join(f"{name} {n}" for name, n in c.fired) or "-"
        lines.append(
            f"| {c.cls} | {c.total} | {c.detected} ({_pct(c.detected, c.total)}) "
            f"| {c.right} ({_pct(c.right, c.total)}) | {c.in_query} ({_pct(c.in_query, c.total)}) "
            f"| {fired} |"
        )
    total = sum(c.total for c in ev.classes)
    detected = sum(c.detected for c in ev.classes)
    right = sum(c.right for c in ev.classes)
    query = sum(c.in_query for c in ev.classes)
    lines += [
        f"| **all** | **{total}** | **{detected} ({_pct(detected, total)})** "
        f"| **{right} ({_pct(right, total)})** | **{query} ({_pct(query, total)})** | |",
        "",
    ]
    return lines


def _kind_table(ev: Evaluation) -> list[str]:
    lines = [
        "### False positives per benign kind",
        "",
        "| kind | entries | flagged | rate | detectors that fired (entries) |",
        "|---|---|---|---|---|",
    ]
    for k in ev.kinds:
        fired: Counter[str] = Counter()
        for _, hits in k.flagged:
            fired.update({h.detector for h in hits})
        names = ", ".join(f"{d} {n}" for d, n in sorted(fired.items())) or "-"
        label = f"{k.kind} (apart)" if k.kind in APART else k.kind
        lines.append(
            f"| {label} | {k.total} | {len(k.flagged)} | {_pct(len(k.flagged), k.total)} "
            f"| {names} |"
        )
    inside = [k for k in ev.kinds if k.kind not in APART]
    n_in = sum(k.total for k in inside)
    f_in = sum(len(k.flagged) for k in inside)
    n_all = sum(k.total for k in ev.kinds)
    f_all = sum(len(k.flagged) for k in ev.kinds)
    lines += [
        f"| **all but {', '.join(APART)}** | **{n_in}** | **{f_in}** | **{_pct(f_in, n_in)}** | |",
        f"| **all kinds** | **{n_all}** | **{f_all}** | **{_pct(f_all, n_all)}** | |",
        "",
    ]
    return lines


def _lists(ev: Evaluation) -> list[str]:
    lines = ["### Missed attacks (no detector fired)", ""]
    for c in ev.classes:
        if not c.missed:
            continue
        lines += [f"**{c.cls}** ({len(c.missed)} of {c.total}):", ""]
        lines += [
            f"- {_shown(a.payload)}" + ("" if a.where == "value" else f" (as {a.where})")
            for a in c.missed
        ]
        lines.append("")
    wrong = [(c.cls, a, names) for c in ev.classes for a, names in c.wrong_only]
    if wrong:
        lines += ["### Missed by their own detector, caught by another", ""]
        lines += [f"- {cls}: {_shown(a.payload)} by {', '.join(n)}" for cls, a, n in wrong]
        lines.append("")
    lines += ["### False positives (benign values flagged, with detector:signature)", ""]
    for k in ev.kinds:
        if not k.flagged:
            continue
        lines += [f"**{k.kind}** ({len(k.flagged)} of {k.total}):", ""]
        lines += [f"- {_shown(payload)} → {_hits(hits)}" for payload, hits in k.flagged]
        lines.append("")
    return lines


def render(ev: Evaluation, date: str) -> str:
    """The generated section of docs/detection.md, markers included."""
    attacks = sum(c.total for c in ev.classes)
    benign = sum(k.total for k in ev.kinds)
    per_scan = ev.seconds / ev.scans * 1e6 if ev.scans else 0.0
    lines = [
        START,
        "## Latest results",
        "",
        f"Run {date} with `python -m bench.detection` on {platform.python_implementation()} "
        f"{platform.python_version()}: {attacks} attacks and {benign} benign values, "
        f"{ev.scans} scans in {ev.seconds * 1e3:.0f} ms ({per_scan:.0f} µs per scan, "
        "one value each, all detectors enabled).",
        "",
        *_class_table(ev),
        *_kind_table(ev),
        *_lists(ev),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace the delimited results section of doc, keeping the hand-written part above it."""
    docsection.write_section(doc, section, START, END, "# Detection")


def _print(ev: Evaluation) -> None:
    print(f"{'class':<16}{'n':>5}{'detected':>12}{'own':>12}")
    for c in ev.classes:
        print(f"{c.cls:<16}{c.total:>5}{c.rate():>12.1%}{c.right_rate():>12.1%}")
    print()
    print(f"{'kind':<18}{'n':>5}{'flagged':>9}{'rate':>8}")
    for k in ev.kinds:
        print(f"{k.kind:<18}{k.total:>5}{len(k.flagged):>9}{k.rate():>8.1%}")
    print(
        f"\nfalse positives: {ev.fp_rate():.1%} (all but {', '.join(APART)}), "
        f"{ev.fp_rate(apart=True):.1%} (all kinds); {ev.scans} scans in {ev.seconds:.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """Evaluate the corpus, print the table and (unless --no-write) rewrite docs/detection.md."""
    p = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    p.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    p.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to rewrite")
    p.add_argument("--attacks", type=Path, default=ATTACKS, help="attack corpus (JSON lines)")
    p.add_argument("--benign", type=Path, default=BENIGN, help="benign corpus (JSON lines)")
    args = p.parse_args(argv)
    if (args.attacks, args.benign) != (ATTACKS, BENIGN) and not args.no_write:
        p.error("another corpus is reported with --no-write (the doc describes tests/corpus)")
    ev = evaluate(load_attacks(args.attacks), load_benign(args.benign))
    _print(ev)
    if not args.no_write:
        date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        write_section(args.doc, render(ev, date))
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
