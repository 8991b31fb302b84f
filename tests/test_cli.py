"""The `guardrail-authz` command line: validate and eval, run as real subprocesses."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SHIPPED_POLICIES


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardrail_authz", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_shipped_policies_ok() -> None:
    out = _run("validate", str(SHIPPED_POLICIES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        "ok: 6 policies (customers@1, orders@1, profile@1, public@1, query-apis@1, search@1), "
        "9 routes" in out.stdout
    )


def test_validate_prints_every_error_with_file_line_field(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: guardrail-authz/v1\n"
        "kind: GuardrailPolicy\n"
        "metadata: {name: a}\n"
        "spec:\n"
        "  colour: blue\n"
        "  routes:\n"
        "    - name: r\n"
        "      match: {paths: [/x]}\n"
        "      rules:\n"
        "        - name: bad\n"
        "          effect: allow\n"
        "          when:\n"
        "            headers: [{name: x, regex: '(unclosed'}]\n"
    )
    (tmp_path / "b.yaml").write_text("apiVersion: v0\nkind: GuardrailPolicy\n")
    out = _run("validate", str(tmp_path))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert "a.yaml:5: spec.colour: unknown field 'colour'" in lines[0]
    assert any(
        line.startswith("a.yaml:13: spec.routes[0].rules[0].when.headers[0].regex:")
        and "[condition.regex]" in line
        for line in lines
    )
    assert any(line.startswith("b.yaml:1: apiVersion:") for line in lines)
    assert any("missing required field 'metadata'" in line for line in lines)
    assert "error(s)" in out.stderr


def _request(**fields: object) -> str:
    return json.dumps({"method": "GET", "host": "shop.example", **fields})


def test_eval_allowed_prints_decision_exit_0() -> None:
    req = _request(path="/api/orders/3", headers={"X-Api-Key": "demo-admin-key"})
    out = _run("eval", "--policies", str(SHIPPED_POLICIES), "--request", "-", stdin=req)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["allowed"] is True
    assert d["status"] == 200
    assert d["route"] == "orders/read"
    assert d["action"] == "orders.read"
    assert d["policy_version"].startswith(
        "customers@1,orders@1,profile@1,public@1,query-apis@1,search@1#"
    )
    assert d["decision_id"]
    assert d["upstream_headers_set"]["x-guardrail-principal"] == "admin"
    assert "x-api-key" in d["upstream_headers_remove"]
    assert d["response_headers_add"] == {}
    assert d["reasons"] == ["allowed_by_rule:api-key-callers"]


def test_eval_denied_exit_3_from_file(tmp_path: Path) -> None:
    req = tmp_path / "req.json"
    req.write_text(
        _request(method="DELETE", path="/api/orders/3", headers={"x-api-key": "demo-reader-key"})
    )
    out = _run("eval", "--policies", str(SHIPPED_POLICIES), "--request", str(req))
    assert out.returncode == 3
    d = json.loads(out.stdout)
    assert (d["allowed"], d["status"], d["reasons"]) == (False, 403, ["no_rule_matched"])
    assert d["principal"] == "reader"


def test_eval_source_principal_and_errors(tmp_path: Path) -> None:
    req = _request(
        path="/api/orders", source_principal="spiffe://cluster.local/ns/shop/sa/frontend"
    )
    out = _run("eval", "--policies", str(SHIPPED_POLICIES), "--request", "-", stdin=req)
    assert out.returncode == 0
    assert json.loads(out.stdout)["principal"] == "spiffe://cluster.local/ns/shop/sa/frontend"
    bad_json = _run("eval", "--policies", str(SHIPPED_POLICIES), "--request", "-", stdin="{nope")
    assert bad_json.returncode == 1
    assert "cannot read request" in bad_json.stderr
    not_object = _run("eval", "--policies", str(SHIPPED_POLICIES), "--request", "-", stdin="[]")
    assert not_object.returncode == 1
    missing = _run("eval", "--policies", str(tmp_path / "nope"), "--request", "-", stdin=req)
    assert missing.returncode == 1
    assert "policy source does not exist" in missing.stderr


def test_serve_reports_port_in_use_clearly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "guardrail_authz", "serve", "--policies", str(SHIPPED_POLICIES),
             "--grpc", "127.0.0.1:0", "--http", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        grpc_busy = subprocess.run(
            [sys.executable, "-m", "guardrail_authz", "serve", "--policies", str(SHIPPED_POLICIES),
             "--grpc", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 2
    assert f"cannot listen for ops HTTP on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    assert grpc_busy.returncode == 2
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in grpc_busy.stderr
    assert "Traceback" not in grpc_busy.stderr


def test_demo_token_prints_only_a_token_of_the_demo_issuer() -> None:
    from jwt import PyJWKSet, decode

    from guardrail_authz.demo import idp

    out = _run("demo-token", "--sub", "dana", "--scope", "profile:read orders:read", "--ttl", "60")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    token = out.stdout.strip()
    key = PyJWKSet.from_dict(idp.jwks()).keys[0]
    claims = decode(token, key.key, algorithms=["EdDSA"], audience=idp.AUDIENCE, issuer=idp.ISSUER)
    assert (claims["sub"], claims["scope"]) == ("dana", "profile:read orders:read")
    assert 55 <= claims["exp"] - time.time() <= 61
    expired = _run("demo-token", "--sub", "dana", "--ttl", "-60").stdout.strip()
    late = decode(expired, key.key, algorithms=["EdDSA"], audience=idp.AUDIENCE, leeway=120)
    assert late["exp"] < time.time()
