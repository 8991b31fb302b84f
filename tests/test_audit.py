"""The audit log: valid JSON lines, no secrets, batched writes that are never lost on close."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from guardrail_authz import audit
from guardrail_authz.audit import (
    MAX_HEADER_VALUE,
    MAX_QUERY,
    AuditLog,
    SecretHeaders,
    _Clock,
    redact_headers,
    redact_query,
    render,
)
from guardrail_authz.engine.decision import DECISION_ID_HEADER, Decision, WouldDeny
from guardrail_authz.engine.request import RequestView
from tests.conftest import SHIPPED_POLICIES

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


def _decision_lines(path: Path) -> list[str]:
    """The decision lines of a log (checkpoint lines of the hash chain left out)."""
    return [line for line in path.read_text().splitlines() if '"event":"checkpoint"' not in line]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _decision_lines(path)]


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
    assert len(_decision_lines(tmp_path / "a.log")) == 1
    log.close()


def test_in_a_loop_lines_are_batched_then_written(tmp_path: Path) -> None:
    path = tmp_path / "a.log"

    async def run() -> tuple[int, int, int]:
        log = AuditLog(path, flush_interval=0.05)
        for _ in range(100):
            log.record(_decision(), _view(), 0.001)
        before = len(_decision_lines(path))
        await asyncio.sleep(0.15)
        after = len(_decision_lines(path))
        log.record(_decision(), _view(), 0.001)
        log.close()  # close flushes what is pending: nothing is lost on shutdown
        return before, after, len(_decision_lines(path))

    assert asyncio.run(run()) == (0, 100, 101)


async def _written_within(path: Path, seconds: float) -> int:
    """How many decision lines the log holds once it holds any, or after `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if _decision_lines(path):
            break
        await asyncio.sleep(0.05)
    return len(_decision_lines(path))


def test_a_burst_is_written_once_it_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "QUIET", 0.5)  # wide margins: the machine may be slow
    path = tmp_path / "a.log"

    async def run() -> tuple[list[int], int]:
        log = AuditLog(path, flush_interval=30)
        seen = []
        for _ in range(8):  # 0.1 s apart: longer than QUIET, but never quiet for QUIET
            log.record(_decision(), _view(), 0.001)
            await asyncio.sleep(0.1)
            seen.append(len(_decision_lines(path)))
        written = await _written_within(path, 5.0)  # then quiet: written QUIET after the last
        log.close()
        return seen, written

    assert asyncio.run(run()) == ([0] * 8, 8)


def test_a_steady_stream_is_written_at_the_interval_at_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "QUIET", 10.0)  # never quiet long enough
    path = tmp_path / "a.log"

    async def run() -> int:
        log = AuditLog(path, flush_interval=0.1)
        for _ in range(100):  # a decision every 10 ms for a second or more
            log.record(_decision(), _view(), 0.001)
            await asyncio.sleep(0.01)
        during = len(_decision_lines(path))
        log.close()
        return during

    assert asyncio.run(run()) >= 50  # what is at most 0.1 s old may still be queued


def test_a_cpu_bound_process_writes_at_the_interval_even_when_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "QUIET", 0.01)
    path = tmp_path / "a.log"

    async def run() -> tuple[int, int]:
        log = AuditLog(path, flush_interval=1.0, cpu_share=0)  # share 0: always CPU-bound
        log.record(_decision(), _view(), 0.001)
        await asyncio.sleep(0.3)  # quiet for 30 times QUIET: batches still wait the interval
        early = len(_decision_lines(path))
        written = await _written_within(path, 3.0)
        log.close()
        return early, written

    assert asyncio.run(run()) == (0, 1)


def test_lines_are_ascii_whichever_encoder_writes_them() -> None:
    view = _view("/caf\u00e9?q=\u2603")
    view.headers = {"x-name": "Zo\u00eb \u2603", "x-del": "a\x7fb", "x-odd": "\ud800"}
    line = render(_decision(), view, 0.0, "t")
    assert line.isascii()
    assert "\\u00e9" in line  # escaped by the C encoder, which orjson hands non-ASCII to
    assert "\\u007f" in line
    record = json.loads(line)
    assert record["path"] == "/caf\u00e9"
    assert record["headers"] == view.headers
    plain = json.loads(render(_decision(), _view("/plain"), 0.0, "t"))
    assert audit._ascii(plain) == audit.encode(plain)  # orjson writes what the C encoder does


def test_a_record_that_cannot_render_keeps_the_rest_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    bad = _decision()
    bad.decision_id = "d-bad"
    bad.reasons.append(object())  # type: ignore[arg-type]  # as a bug upstream of the audit would

    async def run() -> None:
        log = AuditLog(path, flush_interval=60)
        log.record(_decision(), _view(), 0.001)
        log.record(bad, _view(), 0.001)
        log.record(_decision(), None, 0.001)
        log.close()

    asyncio.run(run())
    records = _records(path)
    assert [r["event"] for r in records] == ["decision", "decision_unrenderable", "decision"]
    assert records[1]["decision_id"] == "d-bad"
    assert [r["seq"] for r in records] == [1, 2, 3]  # the unrenderable line is chained too


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


def _snapshot_secrets() -> tuple[frozenset[str], frozenset[str]]:
    from guardrail_authz.policy.compile import load_directory

    snap = load_directory(SHIPPED_POLICIES)
    return snap.api_key_headers, snap.secret_headers


def test_demo_secrets_never_reach_a_record_but_the_key_hash_does(tmp_path: Path) -> None:
    api_key_headers, secret_headers = _snapshot_secrets()
    headers = {
        ":authority": "shop.example", ":path": "/api/orders?token=tok-s3cr3t&page=2",
        "x-api-key": "demo-reader-key", "authorization": "Bearer eyJhbGciOi.payload.sig",
        "cookie": "session=c00kie-s3cr3t", "referer": "https://shop.example/?token=tok-s3cr3t",
    }  # fmt: skip
    view = RequestView(
        method="GET", raw_path="/api/orders?token=tok-s3cr3t&page=2", host="shop.example",
        headers=headers, port=8080,
    )  # fmt: skip
    log = AuditLog(tmp_path / "a.log")
    log.set_secret_headers(api_key_headers, secret_headers)
    log.record(_decision(), view, 0.001)
    log.close()
    text = (tmp_path / "a.log").read_text()
    for secret in ("demo-reader-key", "eyJhbGciOi", "Bearer", "c00kie-s3cr3t", "tok-s3cr3t"):
        assert secret not in text
    (record,) = _records(tmp_path / "a.log")
    digest = hashlib.sha256(b"demo-reader-key").hexdigest()
    assert record["headers"]["x-api-key"] == f"sha256:{digest}"
    assert record["headers"]["authorization"] == "[redacted]"
    assert record["headers"]["cookie"] == "[redacted]"
    assert record["headers"][":path"] == "/api/orders?token=[redacted]&page=2"
    assert record["headers"]["referer"] == "https://shop.example/?token=[redacted]"
    assert record["headers"][":authority"] == "shop.example"  # pseudo-headers kept
    assert record["query"] == "token=[redacted]&page=2"
    assert record["port"] == 8080


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("page=2&sort=asc", "page=2&sort=asc"),
        ("access_token=a&page=2", "access_token=[redacted]&page=2"),
        ("API_KEY=a&Password=b&passwd=c&pwd=d", "API_KEY=~&Password=~&passwd=~&pwd=~"),
        ("X-Amz-Signature=a&sig=b&code=c&state=d", "X-Amz-Signature=~&sig=~&code=~&state=d"),
        ("session_id=a&auth=b&client_secret=c", "session_id=~&auth=~&client_secret=~"),
        ("%74oken=a&q=%41", "%74oken=[redacted]&q=%41"),  # a name percent-encoded is decoded
        ("token", "token"),  # no value, nothing to hide
    ],
)  # fmt: skip
def test_query_values_of_secret_looking_parameters_are_redacted(query: str, expected: str) -> None:
    assert redact_query(query) == expected.replace("~", "[redacted]")


def test_the_query_is_capped_and_omitted_when_empty() -> None:
    long = "q=" + "a" * 5000
    record = json.loads(render(_decision(), _view("/p?" + long + "#frag"), 0.0, "t"))
    assert record["query"] == long[:MAX_QUERY]
    for path in ("/p", "/p?", "/p?#frag"):
        assert "query" not in json.loads(render(_decision(), _view(path), 0.0, "t"))


def test_headers_are_hashed_redacted_or_capped_by_name() -> None:
    secrets = SecretHeaders(frozenset({"x-tenant-key"}), frozenset({"x-jwt", "cookie"}))
    headers = {
        "x-tenant-key": "k1", "x-jwt": "j", "cookie": "c", "x-auth-token": "t",
        "x-session-id": "s", "x-client-secret": "cs", "x-db-password": "p", "x-apikey": "k2",
        "x-api-key": "k3", "user-agent": "u" * 2000, "accept": "*/*",
    }  # fmt: skip
    out = redact_headers(headers, secrets)
    assert out["x-tenant-key"] == "sha256:" + hashlib.sha256(b"k1").hexdigest()
    assert out["x-apikey"] == "sha256:" + hashlib.sha256(b"k2").hexdigest()
    assert out["x-api-key"] == "sha256:" + hashlib.sha256(b"k3").hexdigest()
    for name in ("x-jwt", "cookie", "x-auth-token", "x-session-id", "x-client-secret"):
        assert out[name] == "[redacted]"
    assert out["x-db-password"] == "[redacted]"
    assert out["user-agent"] == "u" * MAX_HEADER_VALUE + "…[truncated]"
    assert out["accept"] == "*/*"
    assert headers["cookie"] == "c"  # the request's own headers are left alone
    again = redact_headers(headers, secrets)  # the second time from the remembered names
    assert again == out


def test_names_are_still_classified_once_the_memory_of_names_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit, "MAX_KNOWN_NAMES", 3)
    secrets = SecretHeaders(frozenset({"x-api-key"}), frozenset({"authorization"}))
    assert redact_headers({"a": "1", "b": "2", "c": "3"}, secrets) == {"a": "1", "b": "2", "c": "3"}
    late = {"a": "1", "authorization": "Bearer x", "x-refresh-token": "r", "x-api-key": "k"}
    out = redact_headers(late, secrets)
    assert out["authorization"] == out["x-refresh-token"] == "[redacted]"
    assert out["x-api-key"].startswith("sha256:")
    assert len(secrets.known) == 3


def test_until_names_are_set_the_always_secret_ones_are_used(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.log")
    view = _view("/p")
    view.headers = {"x-custom-key": "custom", "x-api-key": "demo-reader-key"}
    log.record(_decision(), view, 0.001)
    log.set_secret_headers(frozenset({"x-custom-key"}), frozenset({"x-custom-key"}))
    log.record(_decision(), view, 0.001)
    log.close()
    first, second = _records(tmp_path / "a.log")
    assert first["headers"]["x-custom-key"] == "custom"
    assert first["headers"]["x-api-key"].startswith("sha256:")
    assert second["headers"]["x-custom-key"] == "sha256:" + hashlib.sha256(b"custom").hexdigest()


def test_names_current_at_flush_apply_to_queued_records(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    view = _view("/p")
    view.headers = {"x-later": "v"}

    async def run() -> None:
        log = AuditLog(path, flush_interval=60)
        log.record(_decision(), view, 0.001)
        log.set_secret_headers(frozenset(), frozenset({"x-later"}))
        log.close()

    asyncio.run(run())
    assert _records(path)[0]["headers"]["x-later"] == "[redacted]"


def test_credential_enforcement_and_mutations_are_recorded() -> None:
    d = _decision()
    d.credential = "api_key"
    d.upstream_headers_set += [
        ("x-guardrail-principal", "reader", "overwrite"),
        (DECISION_ID_HEADER, "d-1", "overwrite"),
        ("authorization", "Bearer upstream-s3cr3t", "overwrite"),
    ]
    d.upstream_headers_remove.append("x-api-key")
    d.response_headers_add.append(("cache-control", "no-store", "overwrite"))
    d.query_set += [("v", "2"), ("api_token", "qs3cr3t")]
    d.query_remove.append("debug")
    line = render(d, _view(), 0.0, "t")
    record = json.loads(line)
    assert record["credential"] == "api_key"
    assert record["enforced"] is True
    assert "would_deny" not in record
    assert record["mutations"] == {
        "set": {"x-guardrail-principal": "reader", "authorization": "[redacted]"},
        "remove": ["x-api-key"],
        "response": {"cache-control": "no-store"},
        "query_set": {"v": "2", "api_token": "[redacted]"},
        "query_remove": ["debug"],
    }
    assert "s3cr3t" not in line


def test_monitored_denials_and_empty_mutations() -> None:
    d = _decision()
    d.monitored.append(WouldDeny(403, "denied_by_rule:x", "x", "rule"))
    d.upstream_headers_set.append((DECISION_ID_HEADER, "d-1", "overwrite"))
    record = json.loads(render(d, _view(), 0.0, "t"))
    assert record["enforced"] is False
    assert record["would_deny"] == [
        {"status": 403, "reason": "denied_by_rule:x", "rule": "x", "scope": "rule"}
    ]
    assert record["mutations"] == {}  # the decision id alone is left out
    denied = Decision(False, 403, "no_rule_matched", "d-2", "v")
    assert "mutations" not in json.loads(render(denied, _view(), 0.0, "t"))


def test_a_record_without_a_view_has_no_request_fields() -> None:
    record = json.loads(render(_decision(), None, 0.0, "t"))
    assert record["port"] is None
    assert "headers" not in record
    assert "query" not in record


def test_chaining_only_puts_seq_and_prev_first(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = AuditLog(path)
    log.record(_decision(), _view(), 0.001)
    log.close()
    (line,) = _decision_lines(path)
    assert re.match(r'\{"seq":1,"prev":"[0-9a-f]{64}","time":"', line)
    chained = json.loads(line)
    plain = json.loads(render(_decision(), _view(), 0.001, chained["time"]))
    assert list(chained)[:2] == ["seq", "prev"]
    assert {k: v for k, v in chained.items() if k not in ("seq", "prev")} == plain
    assert list(chained)[2:] == list(plain)  # every field kept, in its order


def test_records_are_chained_when_written_not_when_queued(tmp_path: Path) -> None:
    path = tmp_path / "a.log"

    async def run() -> tuple[int, int]:
        log = AuditLog(path, flush_interval=60)
        for _ in range(3):
            log.record(_decision(), _view(), 0.001)
        queued = log._out.chain.seq  # only the start checkpoint so far
        log.flush()
        written = log._out.chain.seq
        log.close()
        return queued, written

    assert asyncio.run(run()) == (1, 4)


def test_standard_output_gets_the_chain_too(capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog()
    log.record(_decision(), None, 0.001)
    log.close()
    log.close()  # closing twice writes one stop checkpoint
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]
    assert [json.loads(line)["event"] for line in lines] == ["checkpoint", "decision", "checkpoint"]
