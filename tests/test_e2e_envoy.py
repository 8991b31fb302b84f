"""End to end: real HTTP through a real Envoy to guardrail-authz and the demo upstream."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_authz.demo import idp
from tests.conftest import SHIPPED_POLICIES
from tests.envoystack import EnvoyStack

pytestmark = pytest.mark.envoy

MUTATIONS = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: gen, version: "GEN"}
spec:
  routes:
    - name: mutate
      action: demo.mutate
      match: {paths: ["/mutate/**"]}
      rules: [{name: anyone, effect: allow}]
      onAllow:
        requestHeaders:
          set:
            - {name: x-tenant, value: shop}
            - {name: x-trace-tag, value: added, mode: append}
            - {name: x-lang, value: en, mode: ifAbsent}
            - {name: x-region, value: eu, mode: ifAbsent}
          remove: [x-debug]
        responseHeaders:
          add: [{name: x-policy-gen, value: "GEN"}]
        queryParameters:
          set: [{name: source, value: guardrail}]
          remove: [debug]
"""


def make_policies(tmp: Path, gen: str = "1", idp_port: int = idp.PORT) -> Path:
    """The shipped policies plus a 'gen' policy whose mutations name its generation; the
    demo issuer's JWKS is fetched from idp_port."""
    target = tmp / "policies"
    shutil.copytree(SHIPPED_POLICIES, target)
    (target / "gen.yaml").write_text(MUTATIONS.replace("GEN", gen))
    profile = target / "profile.yaml"
    profile.write_text(profile.read_text().replace(f":{idp.PORT}/", f":{idp_port}/"))
    return target


@pytest.fixture(scope="module")
def demo_idp() -> Iterator[int]:
    """The demo issuer's JWKS on a free port, as `make run` serves it on 8082."""
    server = idp.serve(0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_idp: int) -> Iterator[EnvoyStack]:
    work = tmp_path_factory.mktemp("e2e")
    with EnvoyStack(make_policies(work, idp_port=demo_idp), work).start() as s:
        yield s


def test_public_ping_open_with_decision_id(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/public/ping")
    assert r.status == 200
    assert r.upstream_headers()["x-guardrail-decision-id"]
    assert r.json()["path"] == "/public/ping"


def test_orders_need_identity(stack: EnvoyStack) -> None:
    for path in ("/api/orders", "/api/orders/42"):
        r = stack.request("GET", path)
        assert r.status == 401
        body = r.json()
        assert body["reason"] == "no_identity"
        assert body["decision_id"] == r.headers["x-guardrail-decision-id"]
        assert r.headers["content-type"] == "application/json"
        assert "www-authenticate" in r.headers


@pytest.mark.parametrize(
    ("key", "principal"), [("demo-reader-key", "reader"), ("demo-admin-key", "admin")]
)
def test_api_key_callers_reach_upstream_as_principal(
    stack: EnvoyStack, key: str, principal: str
) -> None:
    r = stack.request("GET", "/api/orders/42", {"x-api-key": key})
    assert r.status == 200
    seen = r.upstream_headers()
    assert seen["x-guardrail-principal"] == principal
    assert "x-api-key" not in seen


def test_spoofed_guardrail_headers_never_reach_upstream(stack: EnvoyStack) -> None:
    spoof = {"x-guardrail-principal": "admin", "x-guardrail-roles": "admin", "x-guardrail-x": "1"}
    denied = stack.request("GET", "/api/orders", spoof)
    assert denied.status == 401
    r = stack.request("GET", "/api/orders", {**spoof, "x-api-key": "demo-reader-key"})
    assert r.status == 200
    seen = r.upstream_headers()
    assert seen["x-guardrail-principal"] == "reader"
    assert seen["x-guardrail-roles"] == "reader"
    assert "x-guardrail-x" not in seen
    public = stack.request("GET", "/public/ping", spoof).upstream_headers()
    assert not {"x-guardrail-principal", "x-guardrail-roles", "x-guardrail-x"} & set(public)


def test_delete_reader_forbidden_admin_allowed(stack: EnvoyStack) -> None:
    reader = stack.request("DELETE", "/api/orders/42", {"x-api-key": "demo-reader-key"})
    assert reader.status == 403
    assert reader.json()["reason"] == "no_rule_matched"
    admin = stack.request("DELETE", "/api/orders/42", {"x-api-key": "demo-admin-key"})
    assert admin.status == 200
    assert admin.json()["method"] == "DELETE"


def test_search_is_limited_to_5_per_second_per_principal(stack: EnvoyStack) -> None:
    """The shipped /api/search limit through real Envoy: the call after the burst gets 429."""
    statuses: list[int] = []
    refused = None
    for _ in range(12):  # a few ms each: far faster than the 5 per second refill
        r = stack.request("GET", "/api/search?q=x", {"x-api-key": "demo-reader-key"})
        statuses.append(r.status)
        if r.status == 429 and refused is None:
            refused = r
    assert statuses[:5] == [200] * 5, statuses
    assert refused is not None, statuses
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-policy"] == '"per-principal";q=5;w=1'
    assert refused.headers["ratelimit"].startswith('"per-principal";r=0;t=')
    assert refused.json()["reason"] == "rate_limited"
    admin = stack.request("GET", "/api/search", {"x-api-key": "demo-admin-key"})
    assert admin.status == 200  # admin has a quota of its own
    assert admin.headers["ratelimit-policy"] == '"per-principal";q=5;w=1'
    assert admin.upstream_headers()["x-guardrail-principal"] == "admin"


def test_profile_needs_a_token_of_the_demo_issuer(stack: EnvoyStack) -> None:
    """GET /api/profile through real Envoy with tokens minted like `demo-token` does."""
    none = stack.request("GET", "/api/profile")
    assert none.status == 401
    assert none.json()["reason"] == "no_identity"
    assert none.headers["www-authenticate"] == 'Bearer realm="guardrail-authz"'
    token = idp.mint("dana", scope="profile:read")
    deadline = time.monotonic() + 10  # the JWKS is fetched in the background at start
    while (ok := stack.request("GET", "/api/profile", _bearer(token))).status != 200:
        assert ok.json()["reason"] == "token_unknown_key", ok.json()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    seen = ok.upstream_headers()
    assert seen["x-guardrail-principal"] == "dana"
    assert "authorization" not in seen  # the token stays at the guardrail
    expired = stack.request("GET", "/api/profile", _bearer(idp.mint("dana", ttl=-60)))
    assert (expired.status, expired.json()["reason"]) == (401, "token_expired")
    assert "invalid_token" in expired.headers["www-authenticate"]
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}AAAA"
    bad = stack.request("GET", "/api/profile", _bearer(tampered))
    assert (bad.status, bad.json()["reason"]) == (401, "token_signature")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_anything_else_denied_by_default(stack: EnvoyStack) -> None:
    for method, path in (("GET", "/admin"), ("PUT", "/api/orders"), ("GET", "/public/ping/x")):
        r = stack.request(method, path, {"x-api-key": "demo-admin-key"})
        assert r.status == 403, (method, path)
        assert r.json()["reason"] == "route_not_found"


def test_query_and_header_mutations(stack: EnvoyStack) -> None:
    r = stack.request(
        "GET",
        "/mutate/x?debug=1&keep=yes",
        {"x-debug": "on", "x-trace-tag": "client", "x-lang": "fr"},
    )
    assert r.status == 200
    echo = r.json()
    assert echo["query"] == {"keep": "yes", "source": "guardrail"}
    seen = r.upstream_headers()
    assert seen["x-tenant"] == "shop"
    assert "x-debug" not in seen
    assert seen["x-trace-tag"] == "client,added"
    assert seen["x-lang"] == "fr"  # ifAbsent keeps the client's value
    assert seen["x-region"] == "eu"
    assert r.headers["x-policy-gen"] == "1"


def test_body_reaches_the_check(stack: EnvoyStack) -> None:
    payload = b'{"note": "' + b"x" * 2000 + b'"}'
    r = stack.request("POST", "/mutate/body", {"content-type": "application/json"}, payload)
    assert r.status == 200
    assert r.json()["body"] == payload.decode()
    did = r.upstream_headers()["x-guardrail-decision-id"]
    record = stack.audit_records(did)[did]
    assert record["body_bytes"] == len(payload)


def _access_log(stack: EnvoyStack, decision_id: str) -> list[dict[str, object]]:
    """Envoy's JSON access log lines, once the line of this decision is written (Envoy
    writes a line after its response: one more request flushes it)."""
    stack.request("GET", "/public/ping")
    for _ in range(50):
        if decision_id in stack.envoy_log():
            break
        time.sleep(0.1)
    return [json.loads(x) for x in stack.envoy_log().splitlines() if x.startswith("{")]


def test_access_log_carries_decision_id(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/api/orders/9")
    assert r.status == 401
    did = r.headers["x-guardrail-decision-id"]
    _access_log(stack, did)
    line = next(line for line in stack.envoy_log().splitlines() if did in line)
    assert '"ext_authz_latency_us"' in line
    assert json.loads(line)["decision_id"] == did  # from ext_authz's dynamic metadata


def test_access_log_leaves_the_query_string_out(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/public/ping?token=s3cr3t-in-a-query&page=2")
    assert r.status == 200
    did = r.upstream_headers()["x-guardrail-decision-id"]
    [record] = [x for x in _access_log(stack, did) if x.get("decision_id") == did]
    assert record["path"] == "/public/ping"
    assert "s3cr3t-in-a-query" not in stack.envoy_log()
    # The audit record keeps the query, its credential redacted.
    assert stack.audit_records(did)[did]["query"] == "token=[redacted]&page=2"


def test_access_log_decision_id_from_metadata_on_allow(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/public/ping")
    assert r.status == 200
    did = r.upstream_headers()["x-guardrail-decision-id"]
    [record] = [x for x in _access_log(stack, did) if x.get("decision_id_upstream") == did]
    assert record["decision_id"] == did


def test_authz_down_fails_closed_then_recovers(tmp_path: Path) -> None:
    with EnvoyStack(make_policies(tmp_path), tmp_path).start() as s:
        assert s.request("GET", "/public/ping").status == 200
        assert s.server is not None
        s.server.stop()
        down = s.request("GET", "/public/ping")
        assert down.status == 503
        s.start_authz()
        statuses = []
        for _ in range(100):
            statuses.append(s.request("GET", "/public/ping").status)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses


def test_route_without_check_bypasses_the_guardrail(tmp_path: Path) -> None:
    with EnvoyStack(make_policies(tmp_path), tmp_path).start() as s:
        assert s.server is not None
        s.server.stop()  # guardrail down: checked routes fail closed, the exempt one answers
        assert s.request("GET", "/envoy-healthz").status == 200
        assert s.request("GET", "/public/ping").status == 503
