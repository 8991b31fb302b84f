"""The audit log: valid JSON lines, no secrets, batched writes that are never lost on close."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from guardrail_authz.audit import AuditLog, _Clock, render
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView

SECRETS = {
    "x-api-key": "demo-reader-key",
    "authorization": "Bearer abc.def.ghi",
    "cookie": "session=s3cr3t",
}


def _view(path: str = '/a/"quoted"\n/é?token=s3cr3t-query') -> RequestView:
    return RequestView(
        method="GET", raw_path=path, host="Shop.Example:8080", headers=SECRETS,
        source_principal="spiffe://x/ns/a/sa/b", body=b"password=hunter2", request_id="r-1",
    )  # fmt: skip


def _decision() -> Decision:
    d = Decision(True, 200, "allowed", "d-1", "p@1#abc", "p", "p/r", "act", "reader", "rule")
    d.reasons.append("allowed_by_rule:rule")
    return d


def test_render_is_one_json_line_with_the_fields() -> None:
    line = render(_decision(), _view(), 0.000123, "2026-11-21T00:00:00.000Z")
    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["path"] == '/a/"quoted"\n/é'  # query string dropped, escaping correct
    assert record["host"] == "shop.example"
    assert record["outcome"] == "allow"
    assert record["reasons"] == ["allowed_by_rule:rule"]
    assert record["latency_ms"] == 0.123
    assert record["body_bytes"] == len(b"password=hunter2")
    for secret in ("demo-reader-key", "Bearer", "s3cr3t", "hunter2"):
        assert secret not in line


def test_render_without_a_request_view() -> None:
    record = json.loads(render(_decision(), None, 0.0, "t"))
    assert record["method"] is None
    assert record["body_bytes"] == 0


def test_outside_an_event_loop_lines_are_written_at_once(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.log")
    log.record(_decision(), _view(), 0.001)
    assert len((tmp_path / "a.log").read_text().splitlines()) == 1
    log.close()


def test_in_a_loop_lines_are_batched_then_written(tmp_path: Path) -> None:
    path = tmp_path / "a.log"

    async def run() -> tuple[int, int, int]:
        log = AuditLog(path, flush_interval=0.05)
        for _ in range(100):
            log.record(_decision(), _view(), 0.001)
        before = len(path.read_text().splitlines())
        await asyncio.sleep(0.15)
        after = len(path.read_text().splitlines())
        log.record(_decision(), _view(), 0.001)
        log.close()  # close flushes what is pending: nothing is lost on shutdown
        return before, after, len(path.read_text().splitlines())

    assert asyncio.run(run()) == (0, 100, 101)


def test_a_record_that_cannot_render_keeps_the_rest_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    bad = _decision()
    bad.decision_id = "d-bad"
    bad.reasons.append(None)  # type: ignore[arg-type]  # as a bug upstream of the audit would

    async def run() -> None:
        log = AuditLog(path, flush_interval=60)
        log.record(_decision(), _view(), 0.001)
        log.record(bad, _view(), 0.001)
        log.record(_decision(), None, 0.001)
        log.close()

    asyncio.run(run())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["decision", "decision_unrenderable", "decision"]
    assert records[1]["decision_id"] == "d-bad"


def test_clock_stamps_are_milliseconds_even_at_second_boundaries() -> None:
    clock = _Clock()
    base = 1_795_000_000  # 2026-11-18T...
    stamps = [clock.stamp(base + f) for f in (0.0, 0.0004, 0.9994, 0.99999999999, 1.0, 1.0001)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s) for s in stamps)
    assert stamps[0] == stamps[1]  # the same millisecond
    assert stamps[2].endswith(".999Z")
    assert stamps[3] in (stamps[2], stamps[4])  # float rounding may carry into the next second
    assert stamps[4].endswith(".000Z")
    assert stamps[4] == stamps[5]
    assert stamps == sorted(stamps)
