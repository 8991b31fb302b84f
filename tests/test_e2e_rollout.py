"""End to end through real Envoy: monitor mode, a rejected version, rollback under traffic
and resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.envoystack import EnvoyStack
from tests.test_e2e_envoy import make_policies
from tests.test_e2e_reload import Traffic, configmap

pytestmark = pytest.mark.envoy

GUARD = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: guard, version: "MODE"}
spec:
  mode: MODE
  routes:
    - name: beta
      action: demo.guard
      match: {paths: ["/guard/**"]}
      rules:
        - name: no-beta
          effect: deny
          reason: beta_client
          when: {headers: [{name: x-client, equals: beta}]}
        - {name: anyone, effect: allow}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardrail_authz", *args],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )  # fmt: skip


def test_monitor_mode_lets_a_would_be_denied_request_through_and_records_it(
    tmp_path: Path,
) -> None:
    policies = make_policies(tmp_path / "p")
    (policies / "guard.yaml").write_text(GUARD.replace("MODE", "enforce"))
    with EnvoyStack(policies, tmp_path).start() as stack:
        assert stack.server is not None
        beta = {"x-client": "beta"}
        denied = stack.request("GET", "/guard/a", beta)
        assert denied.status == 403
        assert denied.json()["reason"] == "beta_client"
        (policies / "guard.yaml").write_text(GUARD.replace("MODE", "monitor"))
        stack.server.wait_for("guard@monitor")
        through = stack.request("GET", "/guard/a", beta)
        assert through.status == 200  # reached the upstream
        assert through.json()["path"] == "/guard/a"
        normal = stack.request("GET", "/guard/b", {"x-client": "stable"})
        assert normal.status == 200
        did = through.upstream_headers()["x-guardrail-decision-id"]
        normal_id = normal.upstream_headers()["x-guardrail-decision-id"]
        records = stack.audit_records(did, normal_id)
        record = records[did]
        assert record["outcome"] == "allow"
        assert record["enforced"] is False
        assert record["would_deny"] == [
            {"status": 403, "reason": "beta_client", "rule": "no-beta", "scope": "policy"}
        ]
        reasons = record["reasons"]
        assert isinstance(reasons, list)
        assert reasons == ["allowed_by_rule:anyone", "would_deny:beta_client"]
        assert records[normal_id]["enforced"] is True
        assert "would_deny" not in records[normal_id]
        _, metrics = stack.server.http("/metrics")
        assert (
            'guardrail_monitor_would_deny_total{policy="guard",reason="beta_client",'
            'route="guard/beta",rule="no-beta"} 1.0'
        ) in metrics
        # Enforce again: the same request is denied.
        (policies / "guard.yaml").write_text(GUARD.replace("MODE", "enforce"))
        stack.server.wait_for("guard@enforce")
        assert stack.request("GET", "/guard/a", beta).status == 403


def _status(port: int) -> dict[str, object]:
    out = _cli("status", "--server", f"127.0.0.1:{port}", "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def _latest(port: int) -> str:
    latest = _status(port).get("source_latest")
    return str(latest.get("version", "")) if isinstance(latest, dict) else ""


def test_rollback_under_traffic_then_resume(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    configmap(mount, make_policies(tmp_path / "g1", "1"), 1)
    with EnvoyStack(mount, tmp_path).start() as stack:
        server = stack.server
        assert server is not None
        port = stack.authz_port
        configmap(mount, make_policies(tmp_path / "g2", "2"), 2)
        server.wait_for("gen@2")
        marks: dict[str, int] = {}
        with Traffic(stack, duration=30) as traffic:
            time.sleep(1)
            # A bad new version is rejected while the old one serves.
            broken = make_policies(tmp_path / "g3", "3")
            (broken / "gen.yaml").write_text((broken / "gen.yaml").read_text() + "  bogus: 1\n")
            configmap(mount, broken, 3)
            server.wait_for("bogus")
            assert "gen@2" in server.http("/readyz")[1]
            time.sleep(0.5)
            out = _cli("rollback", "--server", f"127.0.0.1:{port}", "--reason", "e2e")
            assert out.returncode == 0, out.stderr
            assert re.match(r"rolled back to \S*gen@1,", out.stdout), out.stdout
            time.sleep(0.3)  # requests already in flight were decided by gen 2
            with traffic.lock:
                marks["rolled_back"] = len(traffic.results)
            # A new version on disk is read and kept but not applied while pinned.
            configmap(mount, make_policies(tmp_path / "g4", "4"), 4)
            deadline = time.monotonic() + 10
            while "gen@4," not in _latest(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "gen@4," in _latest(port)
            time.sleep(0.5)
            with traffic.lock:
                marks["pinned"] = len(traffic.results)
            out = _cli("resume", "--server", f"127.0.0.1:{port}")
            assert out.returncode == 0, out.stderr
            assert "gen@4," in out.stdout
            time.sleep(0.3)
            with traffic.lock:
                marks["resumed"] = len(traffic.results)
            time.sleep(1.0)
    results = traffic.results
    assert not traffic.errors, traffic.errors[:5]
    assert {s for s, _, _ in results} == {200}  # zero failed requests
    gens = [g for _, g, _ in results]
    assert set(gens[: marks["rolled_back"] - 40]) <= {"1", "2"}
    assert set(gens[marks["rolled_back"] : marks["pinned"]]) == {"1"}  # rollback held
    assert set(gens[marks["resumed"] :]) == {"4"}  # resume: the directory's version
    assert "3" not in gens
    assert "2" in gens
    audit = stack.audit_records(*(did for _, _, did in results))
    for _, gen, did in results:  # each request decided by exactly one version
        assert f"gen@{gen}," in str(audit[did]["policy_version"]) + ",", (gen, audit[did])
