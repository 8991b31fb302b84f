"""`guardrail-authz audit verify`: check audit logs' hash chains; name the first broken line."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail_authz.audit_chain import (
    ALG_HMAC,
    ALG_SHA256,
    GENESIS,
    REASONS,
    key_id,
    linker,
    load_key,
)

EXIT_OK = 0
EXIT_BROKEN = 1  # some line breaks the chain
EXIT_UNUSABLE = 2  # a file or the key cannot be read, or a keyed chain needs --key-file
LOOKAHEAD = 1000  # lines read past a seq gap to tell a reordering from a deletion
_HEX = frozenset("0123456789abcdef")


class VerifyError(Exception):
    """The logs cannot be verified at all (unreadable file, missing key)."""


@dataclass(frozen=True, slots=True)
class Break:
    """The first line where the chain breaks: where, which record, what is wrong."""

    kind: str  # edited | deleted | reordered | inserted | truncated | not JSON | malformed | key
    file: str
    line: int
    record: str  # "decision <id> (seq N)", "checkpoint <reason> (seq N)", or "line"
    detail: str

    def render(self) -> str:
        """One line for the terminal."""
        return f"{self.file}:{self.line}: {self.kind}: {self.record}: {self.detail}"


@dataclass(slots=True)
class ChainSummary:
    """What was verified of one chain (one process's lines)."""

    id: str
    first_seq: int
    next_seq: int = 0
    link: str = GENESIS
    records: int = 0
    checkpoints: int = 0
    state: str = "open"  # open | stopped | unclosed (ended without a stop; allowed)
    anchored: bool = True  # began with its start checkpoint (not inside a file not given)
    last: tuple[str, int, str] = ("", 0, "")  # file, line, record of its last line

    def render(self) -> str:
        """One line for the summary."""
        end = {
            "stopped": "stopped cleanly",
            "unclosed": "ended without a stop checkpoint (allowed by --allow-unclosed)",
            "open": f"open at the end of {self.last[0]} (still being written, or its end was "
            "cut: a cut at the end cannot be seen)",
        }[self.state]
        begin = "" if self.anchored else ", began in a file not given"
        return (
            f"chain {self.id}: seq {self.first_seq}-{self.next_seq - 1}, {self.records:,} "
            f"records, {self.checkpoints} checkpoints{begin}, {end}; last link {self.link}"
        )


@dataclass(slots=True)
class Report:
    """The outcome of verifying a set of files, oldest first."""

    files: int = 0
    records: int = 0
    checkpoints: int = 0
    chains: list[ChainSummary] = field(default_factory=list)
    broken: Break | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> str:
        """'3 files, 12,345 records, 2 chains, 4 checkpoints'."""
        parts = [(self.files, "file"), (self.records, "record"), (len(self.chains), "chain")]
        parts.append((self.checkpoints, "checkpoint"))
        return ", ".join(f"{n:,} {word}{'' if n == 1 else 's'}" for n, word in parts)

    def render(self) -> str:
        """The report as printed by the command."""
        out = [f"warning: {w}" for w in self.warnings] + [f"note: {n}" for n in self.notes]
        if self.broken is not None:
            out.append(self.broken.render())
            out.append(f"FAILED: the first broken line is above; before it: {self.counts()}")
        else:
            out.append(f"ok: {self.counts()}")
            out.extend(f"  {c.render()}" for c in self.chains)
        return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class _Line:
    file: str
    number: int
    raw: bytes  # without the newline
    complete: bool  # ended with a newline
    first_in_file: bool
    last_file: bool


def _lines(paths: Sequence[Path]) -> Iterator[_Line]:
    for i, path in enumerate(paths):
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise VerifyError(f"cannot read {path}: {exc.strerror or exc}") from None
        with stream:
            for number, raw in enumerate(stream, 1):
                complete = raw.endswith(b"\n")
                body = raw[:-1] if complete else raw
                yield _Line(str(path), number, body, complete, number == 1, i == len(paths) - 1)


def _parse(line: _Line) -> dict[str, Any] | None:
    try:
        record = json.loads(line.raw)
    except ValueError:  # UnicodeDecodeError included
        return None
    return record if isinstance(record, dict) else None


def _chain_fields(record: dict[str, Any]) -> tuple[int, str] | None:
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int or seq < 0 or not isinstance(prev, str):
        return None
    if len(prev) != 64 or not _HEX.issuperset(prev):
        return None
    return seq, prev


def _what(record: dict[str, Any]) -> str:
    if record.get("event") == "checkpoint":
        return f"checkpoint {record.get('reason')} (seq {record.get('seq')})"
    return f"decision {record.get('decision_id')} (seq {record.get('seq')})"


class _Verifier:
    """Walks the lines once, keeping only the current chain's state."""

    def __init__(self, key: bytes | None, allow_unclosed: bool) -> None:
        self.link = linker(key)
        self.key_id = None if key is None else key_id(key)
        self.allow_unclosed = allow_unclosed
        self.report = Report()
        self.chain: ChainSummary | None = None
        self.pending: deque[_Line] = deque()
        self.seen_any = False
        self.files: set[str] = set()

    def run(self, lines: Iterator[_Line]) -> Report:
        self.source = lines
        while (line := self._next()) is not None:
            broken = self._one(line)
            if broken is not None:
                self.report.broken = broken
                break
        chain = self.chain
        if (
            self.report.broken is None
            and chain is not None
            and chain.state == "open"
            and chain.last[2].startswith("checkpoint rotate")
        ):
            self.report.notes.append(
                f"chain {chain.id} continues after {chain.last[0]} in a file not given"
            )
        return self.report

    def _next(self) -> _Line | None:
        if self.pending:
            return self.pending.popleft()
        return next(self.source, None)

    def _peek(self, n: int) -> list[_Line]:
        while len(self.pending) < n:
            line = next(self.source, None)
            if line is None:
                break
            self.pending.append(line)
        return list(self.pending)[:n]

    def _one(self, line: _Line) -> Break | None:
        self.files.add(line.file)
        record = _parse(line)
        if record is None:
            return self._not_json(line)
        fields = _chain_fields(record)
        if fields is None:
            return Break(
                "malformed",
                line.file,
                line.number,
                "line",
                "no valid seq and prev: not "
                "written by a chained audit log, or its chain fields were changed",
            )
        seq, prev = fields
        here = (line.file, line.number, _what(record))
        link = self.link(line.raw)
        cp = record.get("event") == "checkpoint"
        chain = self.chain
        if cp and record.get("reason") == "start":
            return self._start(line, record, seq, prev, link, here)
        if chain is None or chain.state != "open":
            if not self.seen_any:  # the run begins inside a chain whose start is not given
                if not cp:
                    mismatch = self._alg_ahead(here)
                    if mismatch is not None:
                        return mismatch
                chain = self._begin(record, seq, here, anchored=False)
                self.report.notes.append(
                    f"{line.file} begins inside chain {chain.id} at seq {seq}: its earlier lines "
                    "are in files not given, so they are not verified"
                )
            elif chain is not None and prev == chain.link:
                return Break(
                    "inserted",
                    *here,
                    f"follows the stop checkpoint of chain {chain.id} "
                    f"({chain.last[0]}:{chain.last[1]}): nothing is written after a stop",
                )
            elif chain is not None and record.get("chain") == chain.id:
                return self._classify(line, chain, seq, prev, here)
            else:
                return Break(
                    "deleted",
                    *here,
                    "no line before it links to it: the lines that "
                    "opened its chain were removed" + _file_hint(line),
                )
        elif prev != chain.link or seq != chain.next_seq:
            return self._classify(line, chain, seq, prev, here)
        self.seen_any = True
        return self._advance(chain, record, seq, link, here, cp)

    def _not_json(self, line: _Line) -> Break | None:
        if not line.complete and line.last_file:
            self.report.notes.append(
                f"{line.file}:{line.number}: an incomplete last line was skipped (being written "
                "now, or cut by a crash)"
            )
            return None
        what = "a blank line" if not line.raw.strip() else "not a JSON object"
        broken = Break("not JSON", line.file, line.number, "line", what)
        upcoming = self._peek(1)
        crash = bool(upcoming) and _is_start(upcoming[0])
        if self.allow_unclosed and crash and self.chain is not None:
            self.report.warnings.append(broken.render() + " (cut by a crash, it seems)")
            return None
        return broken

    def _start(
        self,
        line: _Line,
        record: dict[str, Any],
        seq: int,
        prev: str,
        link: str,
        here: tuple[str, int, str],
    ) -> Break | None:
        old = self.chain
        if old is not None and old.state == "open" and record.get("chain") == old.id:
            return Break(
                "reordered",
                *here,
                f"the start of chain {old.id} comes after its later lines "
                f"({old.last[0]}:{old.last[1]}){_file_hint(line)}",
            )
        if old is not None and old.state == "open" and old.last[2].startswith("checkpoint rotate"):
            return Break(
                "deleted",
                *here,
                f"chain {old.id} was rotated out of {old.last[0]} but its next file does not "
                f"follow: chain {record.get('chain')} starts here instead{_file_hint(line)}",
            )
        if old is not None and old.state == "open":
            broken = Break(
                "truncated",
                *old.last,
                f"chain {old.id} ends here without a stop "
                f"checkpoint, and chain {record.get('chain')} starts after it "
                f"({line.file}:{line.number}): its process was killed or crashed (a "
                "crash loses at most one batch), or its last lines were removed",
            )
            if not self.allow_unclosed:
                return broken
            self.report.warnings.append(broken.render())
            old.state = "unclosed"
        if seq != 0 or prev != GENESIS:
            return Break("edited", *here, "a start checkpoint has seq 0 and a prev of 64 zeros")
        chain = self._begin(record, seq, here, anchored=True)
        self.seen_any = True
        return self._advance(chain, record, seq, link, here, cp=True)

    def _begin(
        self, record: dict[str, Any], seq: int, here: tuple[str, int, str], *, anchored: bool
    ) -> ChainSummary:
        name = record.get("chain") if record.get("event") == "checkpoint" else None
        chain = ChainSummary(str(name) if name else "?", seq, seq, anchored=anchored, last=here)
        self.chain = chain
        self.report.chains.append(chain)
        return chain

    def _advance(
        self,
        chain: ChainSummary,
        record: dict[str, Any],
        seq: int,
        link: str,
        here: tuple[str, int, str],
        cp: bool,
    ) -> Break | None:
        if cp:
            broken = self._checkpoint(chain, record, here)
            if broken is not None:
                return broken
        else:
            chain.records += 1
            self.report.records += 1
        chain.next_seq, chain.link, chain.last = seq + 1, link, here
        return None

    def _checkpoint(
        self, chain: ChainSummary, record: dict[str, Any], here: tuple[str, int, str]
    ) -> Break | None:
        name, reason, alg = record.get("chain"), record.get("reason"), record.get("alg")
        if not isinstance(name, str) or reason not in REASONS or alg not in (ALG_SHA256, ALG_HMAC):
            return Break("malformed", *here, "a checkpoint needs chain, reason and alg")
        if chain.id == "?":
            chain.id = name
        elif name != chain.id:
            return Break("edited", *here, f"names chain {name} inside chain {chain.id}")
        problem = self._key_problem(record, here)
        if problem is not None:
            return problem
        chain.checkpoints += 1
        self.report.checkpoints += 1
        if reason == "stop":
            chain.state = "stopped"
        return None

    def _alg_ahead(self, here: tuple[str, int, str]) -> Break | None:
        """For a run that begins with decision lines: the key question, answered by the
        first checkpoint ahead (the lines' links cannot be checked without it)."""
        for later in self._peek(LOOKAHEAD):
            record = _parse(later)
            if record is not None and record.get("event") == "checkpoint":
                where = (later.file, later.number, _what(record))
                return self._key_problem(record, where)
        return None

    def _key_problem(self, record: dict[str, Any], here: tuple[str, int, str]) -> Break | None:
        name, alg = record.get("chain"), record.get("alg")
        if alg == ALG_HMAC and self.key_id is None:
            raise VerifyError(f"chain {name} is keyed ({ALG_HMAC}): pass its key with --key-file")
        if alg == ALG_SHA256 and self.key_id is not None:
            return Break(
                "key",
                *here,
                f"chain {name} is not keyed, but --key-file was given: "
                "written without the key, or rewritten by someone without it",
            )
        if alg == ALG_HMAC and record.get("key") != self.key_id:
            return Break(
                "key",
                *here,
                f"chain {name} was written with key id "
                f"{record.get('key')}; --key-file's key id is {self.key_id}",
            )
        return None

    def _classify(
        self, line: _Line, chain: ChainSummary, seq: int, prev: str, here: tuple[str, int, str]
    ) -> Break:
        expected = chain.next_seq
        if prev == chain.link:
            return Break(
                "edited",
                *here,
                f"has seq {seq} where {expected} was expected, yet links"
                " to the line before it: its seq was changed",
            )
        if seq == expected:
            return Break(
                "edited",
                *chain.last,
                "its hash does not match the prev of the next line "
                f"({line.file}:{line.number}): this line (or that prev) was changed",
            )
        if seq < expected:
            return Break(
                "reordered",
                *here,
                f"seq {seq} comes after seq {expected - 1} "
                f"({chain.last[0]}:{chain.last[1]}){_file_hint(line)}",
            )
        for later in self._peek(LOOKAHEAD):
            if _is_start(later):
                break
            record = _parse(later)
            fields = None if record is None else _chain_fields(record)
            if fields is not None and expected <= fields[0] < seq:
                return Break(
                    "reordered",
                    *here,
                    f"seq {seq} comes before seq {fields[0]} ({later.file}:{later.number})"
                    + _file_hint(line),
                )
        missing = seq - expected
        return Break(
            "deleted",
            *here,
            f"seq jumps from {expected - 1} ({chain.last[2]}, "
            f"{chain.last[0]}:{chain.last[1]}) to {seq}: {missing} line"
            f"{'' if missing == 1 else 's'} missing before it{_file_hint(line)}",
        )


def _is_start(line: _Line) -> bool:
    record = _parse(line)
    return (
        record is not None
        and record.get("event") == "checkpoint"
        and (record.get("reason") == "start")
    )


def _file_hint(line: _Line) -> str:
    if not line.first_in_file:
        return ""
    return (
        " (at the start of a file: is a file of the rotated set missing, or were the files not "
        "given oldest first, e.g. audit.log.2 audit.log.1 audit.log?)"
    )


def verify(paths: Sequence[Path], key: bytes | None = None, allow_unclosed: bool = False) -> Report:
    """Verify audit log files given oldest first; VerifyError when they cannot be read."""
    verifier = _Verifier(key, allow_unclosed)
    report = verifier.run(_lines(paths))
    report.files = len(paths) if report.broken is None else len(verifier.files)
    return report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `audit` command and its `verify` subcommand."""
    audit = sub.add_parser("audit", help="work with audit logs", description="Audit log tools.")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    v = commands.add_parser(
        "verify",
        help="check audit logs' hash chains; name the first edited, deleted or reordered line",
        description=__doc__,
    )
    v.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="audit log files, oldest first (a rotated set: audit.log.2 audit.log.1 audit.log)",
    )
    v.add_argument(
        "--key-file",
        type=Path,
        help="the key the server was given with --audit-key-file (for keyed chains)",
    )
    v.add_argument(
        "--allow-unclosed",
        action="store_true",
        help="accept chains that end without a stop checkpoint (a killed or crashed process) "
        "with a warning, instead of reporting them as truncated",
    )


def run(args: argparse.Namespace) -> int:
    """Run `audit verify`; 0 when every chain verifies, 1 at a broken line, 2 when unusable."""
    try:
        key = None if args.key_file is None else load_key(args.key_file)
        report = verify(args.files, key, args.allow_unclosed)
    except (ValueError, VerifyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_UNUSABLE
    sys.stdout.write(report.render())
    return EXIT_OK if report.broken is None else EXIT_BROKEN


def main(argv: list[str] | None = None) -> int:
    """`python -m guardrail_authz.audit_verify verify FILE...` until cli.py wires `audit`."""
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["audit", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
