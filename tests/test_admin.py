"""The admin API and its CLI against a real server: status, versions, rollback, resume,
evaluate and validate; who may call it (loopback, token, off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from guardrail_authz.admin.v1 import admin_pb2 as pb
from guardrail_authz.admin.v1 import admin_pb2_grpc
from guardrail_authz.rollout.bundle import build_bundle
from guardrail_authz.server.app import ServeConfig, admin_token, is_loopback, mask_key
from tests.serverproc import ServerProcess
from tests.test_history import _write

TOKEN = "0123456789abcdef-admin-token"  # test fixture, not a secret


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardrail_authz", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    directory = tmp_path / "p"
    _write(directory, "1")
    with ServerProcess(directory, tmp_path / "audit.log", reload_interval=0.05) as s:
        yield s


def _addr(s: ServerProcess) -> str:
    return f"127.0.0.1:{s.grpc_port}"


def _status(s: ServerProcess) -> dict[str, object]:
    out = _cli("status", "--server", _addr(s), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def _active(s: ServerProcess) -> str:
    active = _status(s)["active"]
    assert isinstance(active, dict)
    return str(active["version"]).split("#")[0]


def test_rollback_and_resume_through_the_cli(server: ServerProcess) -> None:
    directory = server.policies
    _write(directory, "2")
    server.wait_for("gen@2")
    versions = _cli("versions", "--server", _addr(server))
    assert versions.returncode == 0, versions.stderr
    lines = versions.stdout.splitlines()
    assert lines[0].startswith("* gen@2#")
    assert "file change" in lines[0]
    assert lines[1].startswith("  gen@1#")
    assert "startup" in lines[1]
    # Roll back to the previous version: at once, and pinned.
    out = _cli("rollback", "--server", _addr(server), "--reason", "bad deploy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rolled back to gen@1#")
    assert "(was gen@2#" in out.stdout
    _, ready = server.http("/readyz")
    assert '"policy_version": "gen@1#' in ready  # no wait: in effect when the call returns
    # A change on disk does not undo it; status says so and how to return.
    _write(directory, "3")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        latest = _status(server)["source_latest"]
        if isinstance(latest, dict) and str(latest["version"]).startswith("gen@3#"):
            break
        time.sleep(0.1)
    assert _active(server) == "gen@1"
    human = _cli("status", "--server", _addr(server))
    assert "pinned:   yes, rollback by" in human.stdout
    assert "bad deploy" in human.stdout
    assert "the source has gen@3#" in human.stdout
    assert "`guardrail-authz resume` tracks the source again" in human.stdout
    # Resume: the directory's version, now.
    out = _cli("resume", "--server", _addr(server), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["active"]["version"].startswith("gen@3#")
    assert data["changed"] is True
    assert _active(server) == "gen@3"
    assert "pinned:   no" in _cli("status", "--server", _addr(server)).stdout
    _, metrics = server.http("/metrics")
    assert 'guardrail_policy_rollbacks_total{action="rollback"} 1.0' in metrics
    assert 'guardrail_policy_rollbacks_total{action="resume"} 1.0' in metrics


def test_rollback_to_an_unknown_version_fails_clearly(server: ServerProcess) -> None:
    out = _cli("rollback", "--server", _addr(server), "--to", "deadbeef")
    assert out.returncode == 1
    assert "no kept version matches 'deadbeef'" in out.stderr
    assert "(NOT_FOUND)" in out.stderr
    assert _active(server) == "gen@1"


def test_status_reports_a_rejected_change_while_the_old_version_serves(
    server: ServerProcess,
) -> None:
    _write(server.policies, "2", broken=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "rejected" not in (
        text := _cli("status", "--server", _addr(server)).stdout
    ):
        time.sleep(0.1)
    assert "rejected: the source's newest change" in text
    assert "gen.yaml:9: spec.bogus: unknown field 'bogus'" in text
    assert _active(server) == "gen@1"


def test_evaluate_and_validate_rpcs(server: ServerProcess, tmp_path: Path) -> None:
    _write(server.policies, "2")
    server.wait_for("gen@2")
    with grpc.insecure_channel(_addr(server)) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        old = stub.ListVersions(pb.ListVersionsRequest(), timeout=5).versions[1].version
        req = pb.EvaluateRequest(
            version=old, request=pb.HttpRequest(method="GET", path="/x", host="a")
        )
        r = stub.Evaluate(req, timeout=5)
        assert r.allowed
        assert r.version == old
        assert r.trace[0] == "route: gen/r (action 'r')"
        assert r.trace[-1].startswith("decision: allow 200 allowed; rule 'anyone'")
        assert json.loads(r.decision_json)["policy_version"] == old
        denied = stub.Evaluate(pb.EvaluateRequest(request=pb.HttpRequest(path="/y")), timeout=5)
        assert not denied.allowed
        assert denied.reason == "route_not_found"
        with pytest.raises(grpc.RpcError) as missing:
            stub.Evaluate(pb.EvaluateRequest(version="nope"), timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        good, bad = tmp_path / "good", tmp_path / "bad"
        _write(good, "7")
        build_bundle(good, tmp_path / "good.tar.gz", name="cand", version="7")
        ok = stub.Validate(
            pb.ValidateRequest(bundle=(tmp_path / "good.tar.gz").read_bytes()), timeout=5
        )
        assert ok.ok
        assert ok.version.startswith("gen@7#")
        assert ok.bundle == "cand@7"
        _write(bad, "8")
        build_bundle(bad, tmp_path / "bad.tar.gz", name="cand", version="8")
        (bad / "gen.yaml").write_text((bad / "gen.yaml").read_text() + "  bogus: 1\n")
        # Re-pack by hand is not needed: a corrupted archive is refused with a bundle error.
        data = (tmp_path / "bad.tar.gz").read_bytes()[:-40]
        refused = stub.Validate(pb.ValidateRequest(bundle=data), timeout=5)
        assert not refused.ok
        assert refused.errors
        assert refused.errors[0].code.startswith("bundle.")
    assert _active(server) == "gen@2"  # neither call changed what is active


def test_a_token_protected_admin_api(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    _write(directory, "1")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    extra = ["--admin-token-file", str(token_file)]
    with ServerProcess(directory, tmp_path / "audit.log", extra=extra) as s:
        no = _cli("status", "--server", _addr(s))
        assert no.returncode == 1
        assert "a valid admin token is needed" in no.stderr
        wrong = _cli("status", "--server", _addr(s), env={"GUARDRAIL_ADMIN_TOKEN": "x" * 20})
        assert wrong.returncode == 1
        by_file = _cli("status", "--server", _addr(s), "--token-file", str(token_file))
        assert by_file.returncode == 0, by_file.stderr
        by_env = _cli("versions", "--server", _addr(s), env={"GUARDRAIL_ADMIN_TOKEN": TOKEN})
        assert by_env.returncode == 0, by_env.stderr
        assert TOKEN not in s.stderr()  # never logged


def test_admin_off_says_so(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    _write(directory, "1")
    with ServerProcess(directory, tmp_path / "audit.log", extra=["--admin", "off"]) as s:
        out = _cli("status", "--server", _addr(s))
    assert out.returncode == 1
    assert "does not serve the admin API" in out.stderr


def test_cli_without_a_server() -> None:
    out = _cli("status", "--server", "127.0.0.1:1", "--timeout", "2")
    assert out.returncode == 1
    assert "no guardrail-authz answers at 127.0.0.1:1" in out.stderr


def test_admin_exposure_rules(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text(TOKEN)
    short = tmp_path / "s"
    short.write_text("abc")
    p = tmp_path
    assert admin_token(ServeConfig(p, grpc_addr="127.0.0.1:9191")) == (True, None)
    assert admin_token(ServeConfig(p, grpc_addr="[::1]:9191")) == (True, None)
    assert admin_token(ServeConfig(p, grpc_addr="0.0.0.0:9191")) == (False, None)
    assert admin_token(ServeConfig(p, grpc_addr="0.0.0.0:9191", admin_token_file=token)) == (
        True,
        TOKEN,
    )
    assert admin_token(ServeConfig(p, grpc_addr="127.0.0.1:1", admin="off")) == (False, None)
    with pytest.raises(ValueError, match="needs --admin-token-file"):
        admin_token(ServeConfig(p, grpc_addr="0.0.0.0:9191", admin="on"))
    with pytest.raises(ValueError, match="16\\+ characters"):
        admin_token(ServeConfig(p, admin_token_file=short))
    with pytest.raises(ValueError, match="cannot read --admin-token-file"):
        admin_token(ServeConfig(p, admin_token_file=tmp_path / "missing"))
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("pod.example")


def test_serve_refuses_an_unprotected_admin_api(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    _write(directory, "1")
    out = _cli(
        "serve", "--policies", str(directory), "--grpc", "0.0.0.0:0", "--http", "127.0.0.1:0",
        "--admin", "on",
    )  # fmt: skip
    assert out.returncode == 2
    assert "needs --admin-token-file" in out.stderr


def test_eval_explain_prints_the_trace(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    _write(directory, "1")
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"method": "GET", "path": "/x"}))
    out = _cli("eval", "--policies", str(directory), "--request", str(request), "--explain")
    assert out.returncode == 0, out.stderr
    trace = out.stderr.splitlines()
    assert trace[0] == "  route: gen/r (action 'r')"
    assert "  allow rule 'anyone': matches" in trace
    assert trace[-1].startswith("  decision: allow 200 allowed; rule 'anyone'")
    assert json.loads(out.stdout)["enforced"] is True


def test_mask_key_file(tmp_path: Path) -> None:
    good = tmp_path / "mask.key"
    good.write_text("0123456789abcdef0123\n")
    assert mask_key(good) == b"0123456789abcdef0123"
    assert len(mask_key(None)) == 32  # random per process when none is given
    assert mask_key(None) != mask_key(None)
    short = tmp_path / "short.key"
    short.write_text("abc")
    with pytest.raises(ValueError, match="the mask key needs 16\\+ bytes"):
        mask_key(short)
    with pytest.raises(ValueError, match="cannot read mask key file"):
        mask_key(tmp_path / "missing")
