"""The audit trail's hash chain: written by AuditLog, rotated, verified; tampering is named."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import shutil
from pathlib import Path

import pytest

from guardrail_authz import audit_verify
from guardrail_authz.audit import AuditLog
from guardrail_authz.audit_chain import GENESIS, Chain, key_id, linker, load_key, parse_size
from guardrail_authz.audit_verify import Report, VerifyError, verify
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView
from tests.serverproc import ServerProcess, check_request

KEY = b"audit-hmac-test-key-0f1e2d3c4b5a"


def _decision(n: int) -> Decision:
    d = Decision(True, 200, "allowed", f"d-{n}", "p@1#abc", "p", "p/r", "act", "reader", "rule")
    d.reasons.append("allowed_by_rule:rule")
    return d


def _view(n: int) -> RequestView:
    return RequestView(
        method="GET", raw_path=f"/api/orders/{n}?page=2", host="shop.example",
        headers={"x-api-key": "demo-reader-key", "user-agent": "t/1"},
    )  # fmt: skip


def _write(path: Path, count: int, start: int = 0, **options: object) -> None:
    """`count` decisions through a real AuditLog in a running loop: batches, then close."""

    async def run() -> None:
        log = AuditLog(path, flush_interval=0.005, **options)  # type: ignore[arg-type]
        for n in range(start, start + count):
            log.record(_decision(n), _view(n), 0.001)
            if n % 7 == 6:
                await asyncio.sleep(0.01)  # let a batch be written
        log.close()

    asyncio.run(run())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in _lines(path)]


def _line_of(path: Path, decision_id: str) -> int:
    """The 1-based line number of a decision."""
    for number, record in enumerate(_records(path), 1):
        if record.get("decision_id") == decision_id:
            return number
    raise AssertionError(decision_id)


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _broken(report: Report) -> tuple[str, str, int, str]:
    assert report.broken is not None, report.render()
    b = report.broken
    return b.kind, Path(b.file).name, b.line, b.record


def test_a_log_written_in_batches_is_chained_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 30)
    lines = _lines(path)
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(len(lines)))
    assert records[0]["prev"] == GENESIS
    assert (records[0]["event"], records[0]["reason"]) == ("checkpoint", "start")
    assert (records[-1]["event"], records[-1]["reason"]) == ("checkpoint", "stop")
    assert records[-1]["records"] == 30
    for before, line in itertools.pairwise(lines):
        assert json.loads(line)["prev"] == hashlib.sha256(before.encode()).hexdigest()
        assert line.startswith('{"seq":')  # the two fields first, at a fixed place
    assert [r["decision_id"] for r in records if r["event"] == "decision"] == [
        f"d-{n}" for n in range(30)
    ]
    report = verify([path])
    assert report.broken is None
    assert report.render().splitlines()[0] == "ok: 1 file, 30 records, 1 chain, 2 checkpoints"
    assert report.chains[0].state == "stopped"
    assert report.chains[0].id == records[0]["chain"]


def test_one_edited_byte_names_the_edited_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 20)
    lines = _lines(path)
    number = _line_of(path, "d-9")
    lines[number - 1] = lines[number - 1].replace('"outcome":"allow"', '"outcome":"allox"')
    _rewrite(path, lines)
    assert _broken(verify([path])) == ("edited", "audit.log", number, "decision d-9 (seq 10)")


def test_editing_the_last_record_is_seen_through_the_stop_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 5)
    lines = _lines(path)
    lines[-2] = lines[-2].replace('"status":200', '"status":201')
    _rewrite(path, lines)
    assert _broken(verify([path]))[:3] == ("edited", "audit.log", len(lines) - 1)


def test_a_deleted_record_is_named_by_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 20)
    lines = _lines(path)
    number = _line_of(path, "d-9")
    del lines[number - 1]
    _rewrite(path, lines)
    report = verify([path])
    assert _broken(report) == ("deleted", "audit.log", number, "decision d-10 (seq 11)")
    assert report.broken is not None
    assert "seq jumps from 9 (decision d-8 (seq 9)" in report.broken.detail
    assert "1 line missing" in report.broken.detail


def test_two_swapped_records_are_reordered(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 20)
    lines = _lines(path)
    a, b = _line_of(path, "d-4"), _line_of(path, "d-5")
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    _rewrite(path, lines)
    report = verify([path])
    assert _broken(report) == ("reordered", "audit.log", a, "decision d-5 (seq 6)")
    assert report.broken is not None
    assert f"comes before seq 5 ({path}:{b})" in report.broken.detail


def test_a_record_moved_back_is_reordered(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 20)
    lines = _lines(path)
    moved = lines.pop(_line_of(path, "d-2") - 1)
    lines.insert(_line_of(path, "d-12") - 1, moved)
    _rewrite(path, lines)
    kind, _, _, record = _broken(verify([path]))
    assert kind == "reordered"  # a gap at d-3, and d-2 seen later: moved, not deleted
    assert record == "decision d-3 (seq 4)"


def test_a_line_added_after_the_stop_is_inserted(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 3)
    lines = _lines(path)
    forged = json.loads(lines[1])
    forged.update(seq=len(lines), prev=hashlib.sha256(lines[-1].encode()).hexdigest())
    forged["decision_id"] = "d-forged"
    lines.append(json.dumps(forged, separators=(",", ":")))
    _rewrite(path, lines)
    assert _broken(verify([path]))[0] == "inserted"


def test_a_second_process_chain_in_the_same_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 10)
    _write(path, 10, start=10)
    report = verify([path])
    assert report.broken is None, report.render()
    assert report.counts() == "1 file, 20 records, 2 chains, 4 checkpoints"
    assert len({c.id for c in report.chains}) == 2


def test_a_chain_without_stop_followed_by_another_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    crashed = AuditLog(path)  # no event loop: each record is written at once
    for n in range(5):
        crashed.record(_decision(n), _view(n), 0.001)
    crashed._out._file.close()  # killed: no stop checkpoint
    _write(path, 5, start=5)
    report = verify([path])
    assert _broken(report) == ("truncated", "audit.log", 6, "decision d-4 (seq 5)")
    lenient = verify([path], allow_unclosed=True)
    assert lenient.broken is None
    assert lenient.warnings
    assert "truncated" in lenient.warnings[0]
    assert [c.state for c in lenient.chains] == ["unclosed", "stopped"]


def test_a_line_cut_by_a_crash_is_kept_apart_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 5)
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, -1) + 40])  # the stop line cut mid-way
    _write(path, 2, start=5)  # the next process starts on a line of its own
    report = verify([path])
    assert _broken(report)[:3] == ("not JSON", "audit.log", 7)
    assert verify([path], allow_unclosed=True).broken is None


def test_an_incomplete_last_line_of_the_last_file_is_skipped_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 5)
    with path.open("a") as f:
        f.write('{"seq":8,"prev":"00')  # being written right now
    report = verify([path])
    assert report.broken is None
    assert any("incomplete last line" in note for note in report.notes)


def test_cutting_the_end_of_the_last_file_cannot_be_seen(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 10)
    _rewrite(path, _lines(path)[:-3])  # two records and the stop checkpoint removed
    report = verify([path])
    assert report.broken is None  # the documented limit: nothing follows to contradict it
    assert report.chains[0].state == "open"
    assert "open at the end of" in report.render()


def test_rotation_across_three_files_verifies_and_a_missing_file_is_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    _write(tmp_path / "one.log", 1)
    size = len(_lines(tmp_path / "one.log")[1])  # one record's line
    _write(path, 36, max_bytes=10 * size, keep=5)  # batches of 7: two batches per file
    files = [path.with_name("audit.log.2"), path.with_name("audit.log.1"), path]
    assert all(f.exists() for f in files)
    assert not path.with_name("audit.log.3").exists()
    report = verify(files)
    assert report.broken is None, report.render()
    assert report.counts().startswith("3 files, 36 records, 1 chain")
    for f in files:  # each file opens with a checkpoint and verifies on its own
        first = _records(f)[0]
        assert first["event"] == "checkpoint"
        assert first["reason"] == ("start" if f is files[0] else "continue")
        assert verify([f]).broken is None
    assert _records(files[0])[-1]["reason"] == "rotate"
    kind, name, line, record = _broken(verify([files[0], files[2]]))
    assert (kind, name, line) == ("deleted", "audit.log", 1)
    assert record.startswith("checkpoint continue")
    for order in ([1, 0, 2], [2, 1, 0], [0, 2, 1]):
        out_of_order = verify([files[i] for i in order])
        assert out_of_order.broken is not None
        assert out_of_order.broken.kind == "reordered", out_of_order.render()
        assert "oldest first" in out_of_order.broken.detail


def test_rotation_keeps_only_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 60, max_bytes=3000, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.log", "audit.log.1", "audit.log.2"]
    report = verify([path.with_name("audit.log.2"), path.with_name("audit.log.1"), path])
    assert report.broken is None
    assert report.chains[0].anchored is False  # its start went with the oldest files
    assert any("begins inside chain" in note for note in report.notes)


def test_a_rotation_that_fails_keeps_writing_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "replace", refuse)
    path = tmp_path / "audit.log"
    _write(path, 8, max_bytes=1000)  # a batch of 7, then one more line
    assert [p.name for p in tmp_path.iterdir()] == ["audit.log"]
    reasons = [r["reason"] for r in _records(path) if r["event"] == "checkpoint"]
    assert reasons == ["start", "rotate", "continue", "stop"]  # retried 1000 bytes later: not yet
    assert "could not be rotated" in caplog.text
    assert verify([path]).broken is None


def test_a_file_over_the_limit_at_start_is_rotated_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("old line\n" * 300)
    _write(path, 1, max_bytes=2000)
    assert path.with_name("audit.log.1").read_text() == "old line\n" * 300
    assert verify([path]).broken is None


def test_external_rotation_by_move_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(3):
        log.record(_decision(n), _view(n), 0.001)
    path.rename(tmp_path / "audit.log.1")  # logrotate moves the file, then sends SIGHUP
    log.reopen()
    for n in range(3, 6):
        log.record(_decision(n), _view(n), 0.001)
    log.close()
    moved = tmp_path / "audit.log.1"
    assert _records(moved)[-1]["reason"] == "rotate"
    assert _records(path)[0]["reason"] == "continue"
    assert verify([moved, path]).counts() == "2 files, 6 records, 1 chain, 4 checkpoints"
    assert verify([moved, path]).broken is None


def test_copytruncate_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(3):
        log.record(_decision(n), _view(n), 0.001)
    shutil.copyfile(path, tmp_path / "audit.log.1")
    with path.open("r+") as f:
        f.truncate(0)
    for n in range(3, 6):
        log.record(_decision(n), _view(n), 0.001)
    log.close()
    assert _records(path)[0]["decision_id"] == "d-3"  # appended at the start, not at a hole
    assert verify([tmp_path / "audit.log.1", path]).broken is None
    alone = verify([path])  # verifiable from its first line, which links to nothing given
    assert alone.broken is None
    assert alone.chains[0].anchored is False


def test_periodic_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 25, checkpoint_every=10)
    reasons = [r["reason"] for r in _records(path) if r["event"] == "checkpoint"]
    assert reasons[0] == "start"
    assert reasons[-1] == "stop"
    assert 2 <= reasons.count("periodic") <= 3  # after a batch that reaches 10 more records
    assert verify([path]).broken is None
    timed = tmp_path / "timed.log"
    _write(timed, 3, checkpoint_seconds=0.0)  # every batch with records is followed by one
    assert [r["event"] for r in _records(timed)][-2:] == ["checkpoint", "checkpoint"]


def test_not_json_blank_and_unchained_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 5)
    lines = _lines(path)
    for bad, kind in (("not json", "not JSON"), ("", "not JSON"), ('{"event":"x"}', "malformed")):
        _rewrite(path, [*lines[:3], bad, *lines[3:]])
        assert _broken(verify([path]))[:3] == (kind, "audit.log", 4)


def test_an_empty_file_verifies_with_nothing_in_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    report = verify([path])
    assert report.broken is None
    assert report.counts() == "1 file, 0 records, 0 chains, 0 checkpoints"


def test_with_a_key_only_the_key_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 6, key=KEY)
    first = _records(path)[0]
    assert (first["alg"], first["key"]) == ("hmac-sha256", key_id(KEY))
    assert verify([path], KEY).broken is None
    with pytest.raises(VerifyError, match="keyed"):
        verify([path])
    assert _broken(verify([path], b"another-key-0123456789"))[0] == "key"
    # A forger without the key edits a record and recomputes every link after it.
    lines = _lines(path)
    lines[3] = lines[3].replace('"outcome":"allow"', '"outcome":"deny"')
    forgeries = (
        (None, "hmac-sha256", "edited"),  # links by plain SHA-256, claiming to be keyed
        (None, "sha256", "key"),  # an unkeyed chain where a keyed one is expected
        (b"guessed-key-0123456", None, "edited"),  # links under the wrong key
    )
    for guess, alg, kind in forgeries:
        chain = Chain(guess)
        forged = []
        for line in lines:
            body = json.loads(line)
            if alg is not None and "alg" in body:
                body["alg"] = alg
            del body["seq"], body["prev"]
            forged.append(chain.seal([json.dumps(body, separators=(",", ":")) + "\n"])[0])
        path.write_text("".join(forged))
        assert _broken(verify([path], KEY))[0] == kind
    # Without the key, the re-linked unkeyed forgery passes: the key is what makes forging hard.
    chain = Chain(None)
    unkeyed = [json.loads(line) for line in lines]
    for body in unkeyed:
        body.pop("key", None)
        if "alg" in body:
            body["alg"] = "sha256"
        del body["seq"], body["prev"]
    path.write_text(
        "".join(chain.seal([json.dumps(b, separators=(",", ":")) + "\n" for b in unkeyed]))
    )
    assert verify([path]).broken is None
    assert _broken(verify([path], KEY))[0] == "key"


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guardrail-authz")
    audit_verify.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_the_cli_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    _write(path, 4)
    args = _cli("audit", "verify", str(path))
    assert (args.command, args.audit_command) == ("audit", "verify")
    assert audit_verify.run(args) == 0
    assert capsys.readouterr().out.startswith("ok: 1 file, 4 records, 1 chain, 2 checkpoints\n")
    lines = _lines(path)
    del lines[2]
    _rewrite(path, lines)
    assert audit_verify.run(args) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:3: deleted: decision d-2 (seq 3): seq jumps from 1")
    assert "FAILED" in out
    assert audit_verify.run(_cli("audit", "verify", str(tmp_path / "missing.log"))) == 2
    assert "cannot read" in capsys.readouterr().err
    short = tmp_path / "short.key"
    short.write_text("short\n")
    assert audit_verify.run(_cli("audit", "verify", str(path), "--key-file", str(short))) == 2
    assert "16+ bytes" in capsys.readouterr().err
    assert audit_verify.main(["verify", str(path)]) == 1  # the module's own entry point


@pytest.mark.parametrize("size", [16, 32, 64, 65, 200])
def test_keyed_links_are_standard_hmac_sha256(size: int) -> None:
    key = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
    data = b'{"seq":1,"prev":"00","time":"t"}'
    assert linker(key)(data) == hmac.new(key, data, "sha256").hexdigest()
    assert linker(None)(data) == hashlib.sha256(data).hexdigest()


def test_key_files_and_sizes(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    key.write_bytes(KEY + b"\n")
    assert load_key(key) == KEY
    with pytest.raises(ValueError, match=r"cannot read audit key file .*nope"):
        load_key(tmp_path / "nope")
    assert [parse_size(s) for s in ("1024", "100M", "2GiB", "8k")] == [
        1024,
        100 << 20,
        2 << 30,
        8192,
    ]
    with pytest.raises(ValueError, match="expected a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="1 or more"):
        AuditLog(tmp_path / "a.log", keep=0)


@pytest.mark.integration
def test_the_server_writes_a_chain_that_verifies(tmp_path: Path, policy_dir: Path) -> None:
    log = tmp_path / "audit.log"
    with ServerProcess(policy_dir, log) as server:
        for n in range(5):
            server.check(check_request("GET", f"/api/orders/{n}", headers={"x-api-key": "k"}))
        assert server.terminate() == 0
        stderr = server.stderr()
    (tmp_path / "server.stderr").write_text(stderr)  # scanned for secrets by test_zz_...
    report = verify([log])
    assert report.broken is None, report.render()
    assert report.records == 5
    chain = report.chains[0]
    assert chain.state == "stopped"
    # The operational log holds each checkpoint's link: a witness outside the audit file.
    assert "audit checkpoint stop" in stderr
    assert chain.id in stderr
    assert chain.link in stderr
