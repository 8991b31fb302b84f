"""x-forwarded-client-cert: parsed as Envoy writes it, believed only from trusted proxies."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.request import RequestView
from guardrail_authz.identity.xfcc import client_uri, elements
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError

HASH = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
SPIFFE = "spiffe://cluster.local/ns/shop/sa/frontend"
GATEWAY = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"


@pytest.mark.parametrize(
    ("header", "uri"),
    [
        (f"By={GATEWAY};Hash={HASH};URI={SPIFFE}", SPIFFE),
        (
            f'By=spiffe://a;Hash={HASH};Subject="CN=x,OU=y;z=\\"q\\"";URI={SPIFFE};DNS=x.example',
            SPIFFE,
        ),
        (f"By=spiffe://a;URI=spiffe://first,By=spiffe://b;URI={SPIFFE}", SPIFFE),  # last hop
        (f"By=spiffe://a;URI={SPIFFE},By=spiffe://b;Hash={HASH}", None),  # last has no URI
        ("Hash=abc;DNS=only.example", None),
        ('URI="unterminated', None),
        ("nonsense-without-equals", None),
        ("", None),
    ],
)
def test_client_uri(header: str, uri: str | None) -> None:
    assert client_uri(header) == uri


def test_quoted_values_keep_separators() -> None:
    parsed = elements('Subject="CN=a,O=b;c";URI=spiffe://x')
    assert parsed == [[("Subject", "CN=a,O=b;c"), ("URI", "spiffe://x")]]


POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: p}
spec:
  mtls:
    forwardedClientCert:
      trustedProxies: ["spiffe://cluster.local/ns/istio-system/sa/*"]
  routes:
    - name: r
      match: {paths: [/x]}
      rules:
        - name: frontend
          effect: allow
          when: {sourcePrincipals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}
"""


def _decide(tmp_path: Path, peer: str, xfcc: str | None) -> str:
    (tmp_path / "p.yaml").write_text(POLICY, encoding="utf-8")
    snapshot = load_directory(tmp_path)
    headers = {} if xfcc is None else {"x-forwarded-client-cert": xfcc}
    view = RequestView(
        method="GET", raw_path="/x", host="h", headers=headers, source_principal=peer
    )
    d = evaluate(snapshot, view, "d")
    return f"{d.reason}:{d.principal}"


def test_a_trusted_proxy_speaks_for_its_client(tmp_path: Path) -> None:
    assert _decide(tmp_path, GATEWAY, f"By={GATEWAY};URI={SPIFFE}") == f"allowed:{SPIFFE}"


def test_anyone_else_cannot_claim_a_client(tmp_path: Path) -> None:
    attacker = "spiffe://cluster.local/ns/shop/sa/attacker"
    assert _decide(tmp_path, attacker, f"URI={SPIFFE}") == f"no_rule_matched:{attacker}"
    assert _decide(tmp_path, "", f"URI={SPIFFE}") == "no_identity:None"


def test_a_malformed_header_from_a_trusted_proxy_means_no_identity(tmp_path: Path) -> None:
    assert _decide(tmp_path, GATEWAY, 'URI="broken') == "no_identity:None"
    assert _decide(tmp_path, GATEWAY, None) == f"no_rule_matched:{GATEWAY}"  # the proxy itself


def test_trusted_proxies_must_be_named(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        POLICY.replace('["spiffe://cluster.local/ns/istio-system/sa/*"]', "[]"), encoding="utf-8"
    )
    with pytest.raises(PolicyLoadError) as info:
        load_directory(tmp_path)
    assert [e.code for e in info.value.errors] == ["mtls.trusted"]
