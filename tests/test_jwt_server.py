"""The real server with a JWT policy: keys fetched in the background, Check over gRPC."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from guardrail_authz.wire.envoy.service.auth.v3 import external_auth_pb2 as ea
from tests.jwtkit import AUDIENCE, make_key, serve_idp
from tests.serverproc import ServerProcess, check_request

pytestmark = pytest.mark.integration

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {{name: profile}}
spec:
  jwt:
    issuer: {issuer}
    audiences: [{audience}]
    jwks: {{uri: {uri}}}
  routes:
    - name: me
      match: {{paths: [/api/profile]}}
      rules:
        - {{name: users, effect: allow, when: {{authenticated: true}}}}
"""


def _write(tmp_path: Path, issuer: str, uri: str) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    text = POLICY.format(issuer=issuer, audience=AUDIENCE, uri=uri)
    (policies / "profile.yaml").write_text(text, encoding="utf-8")
    return policies


def _check(server: ServerProcess, token: str) -> ea.CheckResponse:
    headers = {"authorization": f"Bearer {token}"}
    return server.check(check_request("GET", "/api/profile", headers=headers))


def _reason(resp: ea.CheckResponse) -> str:
    if resp.HasField("ok_response"):
        return "allowed"
    return str(json.loads(resp.denied_response.body)["reason"])


def test_keys_are_fetched_in_the_background_and_tokens_verified(tmp_path: Path) -> None:
    key = make_key("ES256", "k1")
    with serve_idp([key]) as idp:
        policies = _write(tmp_path, idp.issuer, idp.jwks_uri)
        with ServerProcess(policies, tmp_path / "audit.log") as server:
            token = key.sign(idp.claims(sub="carol"))
            deadline = time.monotonic() + 10
            while (reason := _reason(_check(server, token))) != "allowed":
                assert reason == "token_unknown_key", reason  # until the first fetch lands
                assert time.monotonic() < deadline, "JWKS never fetched"
                time.sleep(0.05)
            resp = _check(server, token)
            sets = {h.header.key: h.header.value for h in resp.ok_response.headers}
            assert sets["x-guardrail-principal"] == "carol"
            assert "authorization" in resp.ok_response.headers_to_remove
            expired = key.sign(idp.claims(exp=int(time.time()) - 600))
            denied = _check(server, expired)
            assert denied.denied_response.status.code == 401
            assert _reason(denied) == "token_expired"
            assert idp.jwks_hits == 1
        audit = server.audit_log.read_text()
        assert token not in audit
        assert expired not in audit


def test_an_unreachable_idp_does_not_delay_the_start(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}/jwks.json"
    policies = _write(tmp_path, "http://idp.invalid", uri)
    start = time.monotonic()
    with ServerProcess(policies, tmp_path / "audit.log") as server:
        assert server.http("/readyz")[0] == 200
        assert time.monotonic() - start < 10
        token = make_key("EdDSA", "k").sign({"sub": "x"})
        assert _reason(_check(server, token)) == "token_unknown_key"  # no keys: fail closed
        deadline = time.monotonic() + 10
        while "JWKS refresh failed" not in server.stderr():
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.05)
