"""Integration: the real server on free ports, called over gRPC and HTTP."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2 as ea
from tests.serverproc import ServerProcess, check_request

pytestmark = pytest.mark.integration
READER = {"x-api-key": "demo-reader-key"}


def _headers(opts: object) -> dict[str, str]:
    return {h.header.key: h.header.value for h in opts}  # type: ignore[attr-defined]


def test_allow_carries_identity_and_strips_credentials(server: ServerProcess) -> None:
    spoof = {**READER, "x-guardrail-principal": "admin", "x-guardrail-extra": "x"}
    resp = server.check(check_request("GET", "/api/orders/7", headers=spoof))
    assert resp.status.code == 0
    assert resp.WhichOneof("http_response") == "ok_response"
    set_headers = _headers(resp.ok_response.headers)
    assert set_headers["x-guardrail-principal"] == "reader"
    assert set_headers["x-guardrail-decision-id"]
    removed = set(resp.ok_response.headers_to_remove)
    assert {"x-api-key", "x-guardrail-extra"} <= removed
    assert "x-guardrail-principal" not in removed  # overwritten, not removed


def test_deny_has_status_reason_body_and_decision_id(server: ServerProcess) -> None:
    resp = server.check(check_request("GET", "/api/orders"))
    assert resp.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    denied = resp.denied_response
    assert denied.status.code == 401
    headers = _headers(denied.headers)
    body = json.loads(denied.body)
    assert body["reason"] == "no_identity"
    assert body["decision_id"] == headers["x-guardrail-decision-id"]
    assert headers["x-guardrail-reason"] == "no_identity"
    assert "www-authenticate" in headers


def test_reader_cannot_delete_admin_can(server: ServerProcess) -> None:
    reader = server.check(check_request("DELETE", "/api/orders/7", headers=READER))
    assert reader.denied_response.status.code == 403
    admin_key = {"x-api-key": "demo-admin-key"}
    admin = server.check(check_request("DELETE", "/api/orders/7", headers=admin_key))
    assert admin.status.code == 0


def _invalid_utf8_path() -> bytes:
    """A CheckRequest whose http.path string field holds bytes that are not UTF-8."""
    req = ea.CheckRequest()
    req.attributes.request.http.method = "GET"
    req.attributes.request.http.path = "QQQQ"
    return req.SerializeToString().replace(b"QQQQ", b"/\xff\xfe/")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xff\xff", "malformed_request"),
        (b"", "missing_attributes"),
        (_invalid_utf8_path(), "malformed_request"),
    ],
)
def test_malformed_requests_are_denied_not_errors(
    server: ServerProcess, payload: bytes, reason: str
) -> None:
    call = server.channel.unary_unary("/envoy.service.auth.v3.Authorization/Check", None, None)
    raw = call(payload, timeout=5)
    resp = ea.CheckResponse.FromString(raw)
    assert resp.status.code != 0
    assert json.loads(resp.denied_response.body)["reason"] == reason


def test_empty_path_and_huge_headers_fail_closed(server: ServerProcess) -> None:
    empty = server.check(check_request("GET", ""))
    assert empty.denied_response.status.code == 400
    huge = server.check(check_request("GET", "/public/ping", headers={"x-big": "a" * 300_000}))
    assert huge.denied_response.status.code == 431


def test_health_ready_and_metrics(server: ServerProcess) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "envoy.service.auth.v3.Authorization"):
        status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    assert server.http("/healthz") == (200, "ok\n")
    code, body = server.http("/readyz")
    assert code == 200
    assert json.loads(body)["policy_version"].startswith(
        "customers@1,orders@1,profile@1,public@1,query-apis@1,search@1#"
    )
    server.check(check_request("GET", "/public/ping"))
    server.check(check_request("GET", "/nowhere"))
    code, metrics = server.http("/metrics")
    assert code == 200
    labels = (
        'action="public.ping",outcome="allow",policy="public",reason="allowed",route="public/ping"'
    )
    allow = f"guardrail_decisions_total{{{labels}}} 1.0"
    assert allow in metrics
    assert 'action="",outcome="deny",policy="",reason="route_not_found"' in metrics
    assert "guardrail_decision_seconds_count 2.0" in metrics
    assert 'guardrail_stage_seconds_count{stage="decide"} 2.0' in metrics
    assert 'guardrail_stage_seconds_count{stage="encode"} 2.0' in metrics
    assert 'guardrail_policy_reloads_total{result="success"} 1.0' in metrics
    assert "guardrail_policy_active_info{version=" in metrics


def _rewrite_version(path: Path, version: str) -> None:
    text = path.read_text()
    path.write_text(text.replace('version: "1"', f'version: "{version}"', 1))


def test_live_reload_swaps_and_invalid_change_keeps_last_good(server: ServerProcess) -> None:
    orders = server.policies / "orders.yaml"
    _rewrite_version(orders, "2")
    server.wait_for("orders@2")
    resp = server.check(check_request("GET", "/public/ping"))
    version_header = "orders@2"
    assert resp.status.code == 0
    good = orders.read_text()
    orders.write_text(good.replace("effect: allow", "effect: permit", 1))
    server.wait_for("permit")
    code, body = server.http("/readyz")
    assert code == 200  # still serving the last good snapshot
    ready = json.loads(body)
    assert version_header in ready["policy_version"]
    assert any("orders.yaml:" in e and "effect" in e for e in ready["last_reload_error"])
    assert server.check(check_request("GET", "/api/orders", headers=READER)).status.code == 0
    _, metrics = server.http("/metrics")
    assert 'guardrail_policy_reloads_total{result="failure"} 1.0' in metrics
    assert "policy load rejected" in server.stderr()


def test_configmap_data_symlink_swap(tmp_path: Path, policy_dir: Path) -> None:
    # Lay the directory out the way kubelet mounts a ConfigMap.
    mount = tmp_path / "mount"
    mount.mkdir()
    v1 = mount / "..2026_11_21_00_00_00.000000001"
    shutil.copytree(policy_dir, v1)
    (mount / "..data").symlink_to(v1.name)
    for f in v1.iterdir():
        (mount / f.name).symlink_to(Path("..data") / f.name)
    with ServerProcess(mount, tmp_path / "audit.log") as srv:
        srv.wait_for("orders@1")
        v2 = mount / "..2026_11_21_00_01_00.000000002"
        shutil.copytree(v1, v2)
        _rewrite_version(v2 / "orders.yaml", "7")
        tmp_link = mount / "..data_tmp"
        tmp_link.symlink_to(v2.name)
        tmp_link.replace(mount / "..data")  # atomic rename, as kubelet does
        shutil.rmtree(v1)
        srv.wait_for("orders@7")
        assert srv.check(check_request("GET", "/api/orders", headers=READER)).status.code == 0


def test_invalid_policies_at_start_mean_not_ready(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text("apiVersion: guardrail-authz/v1\nkind: GuardrailPolicy\n")
    with ServerProcess(bad, tmp_path / "audit.log") as srv:
        code, body = srv.http("/readyz")
        assert code == 503
        assert "p.yaml:" in body
        resp = srv.check(check_request("GET", "/public/ping"))
        assert resp.denied_response.status.code == 503
        assert json.loads(resp.denied_response.body)["reason"] == "no_policy_loaded"


def test_audit_records_every_decision_without_secrets(server: ServerProcess) -> None:
    secret_headers = {
        **READER,
        "authorization": "Bearer sekrit-token-value",
        "cookie": "session=sekrit-cookie",
    }
    server.check(check_request("GET", "/api/orders/1?api_key=sekrit-query", headers=secret_headers))
    server.check(check_request("GET", "/api/orders", headers={"x-api-key": "wrong-sekrit-key"}))
    assert server.terminate() == 0
    text = server.audit_log.read_text()
    for secret in ("demo-reader-key", "sekrit", "Bearer"):
        assert secret not in text
    records = [r for r in map(json.loads, text.splitlines()) if r["event"] == "decision"]
    assert [r["outcome"] for r in records] == ["allow", "deny"]
    first = records[0]
    for key in ("time", "decision_id", "policy_version", "route", "action", "principal",
                "outcome", "reasons", "latency_ms"):  # fmt: skip
        assert key in first
    assert first["principal"] == "reader"
    assert first["action"] == "orders.read"


def test_sigterm_lets_in_flight_checks_finish(server: ServerProcess) -> None:
    results: list[int] = []
    errors: list[Exception] = []
    futures = [
        server.stub.Check.future(check_request("GET", "/public/ping"), timeout=20)
        for _ in range(300)
    ]
    time.sleep(0.01)

    def collect() -> None:
        for f in futures:
            try:
                results.append(f.result().status.code)
            except grpc.RpcError as exc:
                errors.append(exc)

    t = threading.Thread(target=collect)
    t.start()
    assert server.terminate() == 0
    t.join(30)
    # Every call the server started deciding before SIGTERM was answered in full: the audit
    # log (one line per decision) matches the answers; later calls were refused, not dropped.
    assert len(results) + len(errors) == 300
    assert results.count(0) == len(results)
    assert len(results) > 0
    decided = server.audit_log.read_text().count('"event":"decision"')
    assert decided == len(results)
    refused = {e.code() for e in errors}  # type: ignore[attr-defined]
    assert refused <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
