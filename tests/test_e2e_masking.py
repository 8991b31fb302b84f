"""End to end through real Envoy: response bodies masked by ext_proc per caller, untouched
non-JSON bodies, gzip bodies masked and compressed again, correct Content-Length."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

from guardrail_authz.demo.upstream import PHOTO
from tests.envoystack import EnvoyStack
from tests.test_e2e_envoy import demo_idp, make_policies  # noqa: F401 - fixture

pytestmark = pytest.mark.envoy
READER = {"x-api-key": "demo-reader-key"}
ADMIN = {"x-api-key": "demo-admin-key"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_idp: int) -> Iterator[EnvoyStack]:  # noqa: F811
    work = tmp_path_factory.mktemp("e2e-masking")
    with EnvoyStack(make_policies(work, idp_port=demo_idp), work).start() as s:
        yield s


def _record(stack: EnvoyStack, headers: dict[str, str]) -> tuple[dict[str, object], bytes]:
    r = stack.request("GET", "/api/customers/7", headers)
    assert r.status == 200, r.body
    assert int(r.headers["content-length"]) == len(r.body)  # fixed after masking
    assert r.headers["content-type"] == "application/json"
    data = json.loads(r.body)
    assert isinstance(data, dict)
    return data, r.body


def test_a_reader_sees_email_card_and_ssn_masked(stack: EnvoyStack) -> None:
    data, body = _record(stack, READER)
    assert data["name"] == "Dana Example"  # untouched
    assert data["email"] != "dana@example.com"
    assert "dana@" not in str(data["email"])
    card = data["card"]
    assert isinstance(card, dict)
    assert str(card["number"]).endswith("1111")
    assert "4111" not in str(card["number"])  # only the last 4 digits
    assert data["ssn"] == "[redacted]"
    assert "dana.alt@example.org" not in str(data["note"])  # found by the e-mail detector
    for secret in (b"dana@example.com", b"4111 1111 1111 1111", b"123-45-6789"):
        assert secret not in body


def test_an_admin_sees_the_email_but_not_the_card_or_ssn(stack: EnvoyStack) -> None:
    data, body = _record(stack, ADMIN)
    assert data["email"] == "dana@example.com"  # exempt: role admin
    assert "dana.alt@example.org" in str(data["note"])
    card = data["card"]
    assert isinstance(card, dict)
    assert str(card["number"]).endswith("1111")
    assert b"4111 1111 1111 1111" not in body
    assert data["ssn"] == "[redacted]"


def test_a_gzip_body_is_masked_and_compressed_again(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/api/customers/7", {**READER, "accept-encoding": "gzip"})
    assert r.status == 200, r.body
    assert r.headers["content-encoding"] == "gzip"  # the upstream's, still true
    assert int(r.headers["content-length"]) == len(r.body)
    body = gzip.decompress(r.body)  # the standard library reads what ISA-L wrote
    for secret in (b"dana@example.com", b"4111 1111 1111 1111", b"123-45-6789"):
        assert secret not in body
    plain, _ = _record(stack, READER)
    assert json.loads(body) == plain  # masked as the uncompressed answer is


def test_a_binary_body_passes_untouched(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/api/customers/7/photo", READER)
    assert r.status == 200
    assert r.headers["content-type"] == "image/png"
    assert r.body == PHOTO  # byte for byte, although it holds an e-mail-like string
    assert int(r.headers["content-length"]) == len(PHOTO)


def test_the_caller_still_needs_to_be_allowed(stack: EnvoyStack) -> None:
    r = stack.request("GET", "/api/customers/7")
    assert r.status == 401


def test_routes_without_masking_are_not_processed(stack: EnvoyStack) -> None:
    _record(stack, READER)
    r = stack.request("GET", "/api/orders/7", READER)
    assert r.status == 200
    assert "dana" not in r.body.decode()
    assert stack.server is not None
    _, metrics = stack.server.http("/metrics")
    masked = [x for x in metrics.splitlines() if x.startswith("guardrail_masked_values_total{")]
    assert masked
    assert all('route="customers/read"' in x for x in masked), masked
