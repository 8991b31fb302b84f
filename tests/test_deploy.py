"""Deployment files agree with the server: ports, flags, probes, mounts and provider names."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail_authz.cli import _parser
from guardrail_authz.envoyconf import COMPOSE, TEMPLATE, render
from tests.conftest import REPO, SHIPPED_POLICIES

DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _by_kind(kind: str) -> dict[str, Any]:
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in _docs(path):
            if doc.get("kind") == kind:
                return doc
    raise AssertionError(f"no {kind} under deploy/")


def test_every_manifest_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        for doc in _docs(path):
            assert {"apiVersion", "kind"} <= set(doc), path


def test_deployment_matches_server_flags() -> None:
    deploy = _by_kind("Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = _parser().parse_args(container["args"])  # the real CLI accepts them
    assert args.command == "serve"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.grpc.endswith(f":{ports['grpc']}")
    assert args.http.endswith(f":{ports['ops']}")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    mounts = {Path(m["mountPath"]): m for m in container["volumeMounts"]}
    assert all(m["readOnly"] is True for m in mounts.values())
    volumes = {v["name"]: v for v in pod["volumes"]}
    policies = volumes[mounts[args.policies]["name"]]
    assert policies["configMap"]["name"] == _by_kind("ConfigMap")["metadata"]["name"]
    (keys,) = args.keys
    secret = volumes[mounts[keys]["name"]]["secret"]
    assert secret["optional"] is True  # no Secret yet: the policies' own keys still work
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    # The grace Kubernetes gives must cover the server's own drain.
    assert pod["terminationGracePeriodSeconds"] > args.grace


def test_service_and_istio_provider_agree() -> None:
    service = _by_kind("Service")
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["port"] == 9191
    mesh = _by_kind("IstioOperator")["spec"]["meshConfig"]
    (provider,) = mesh["extensionProviders"]
    ext = provider["envoyExtAuthzGrpc"]
    meta = service["metadata"]
    assert ext["service"] == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert ext["port"] == grpc_port["port"]
    assert ext["failOpen"] is False
    assert ext["timeout"]
    assert ext["includeRequestBodyInCheck"]["maxRequestBytes"] > 0
    policy = _by_kind("AuthorizationPolicy")
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == provider["name"]


def test_configmap_holds_the_shipped_policies() -> None:
    data = _by_kind("ConfigMap")["data"]
    shipped = {p.name: p.read_text() for p in sorted(SHIPPED_POLICIES.glob("*.yaml"))}
    assert data == shipped


def test_compose_envoy_config_is_rendered_from_the_template() -> None:
    committed = (TEMPLATE.parent / "compose.yaml").read_text()
    assert committed.split("\n", 1)[1] == render(COMPOSE)


def test_compose_file_agrees_with_flags() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    authz = services["guardrail-authz"]
    args = _parser().parse_args(authz["command"])
    assert "./policies:/policies:ro" in authz["volumes"]
    assert str(args.policies) == "/policies"
    assert args.grpc.endswith(f":{COMPOSE.authz_port}")
    assert "./envoy/compose.yaml:/etc/envoy/envoy.yaml:ro" in services["envoy"]["volumes"]
    idp = services["demo-idp"]  # serves profile.yaml's JWKS URI from authz's own loopback
    assert idp["network_mode"] == "service:guardrail-authz"
    assert idp["entrypoint"][-2:] == ["--port", "8082"]
    assert "127.0.0.1:8080:8080" in services["envoy"]["ports"]
    assert services["upstream"]["entrypoint"][-1] == str(COMPOSE.upstream_port)


@pytest.mark.envoy
def test_compose_envoy_config_validates() -> None:
    from tests.envoystack import envoy_binary

    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(TEMPLATE.parent / "compose.yaml"),
         "--disable-hot-restart"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]


def test_istio_masking_filter_calls_the_service() -> None:
    service = _by_kind("Service")
    meta = service["metadata"]
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    envoy_filter = _by_kind("EnvoyFilter")
    (patch,) = envoy_filter["spec"]["configPatches"]
    ext_proc = patch["patch"]["value"]["typed_config"]
    cluster = ext_proc["grpc_service"]["envoy_grpc"]["cluster_name"]
    host = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert cluster == f"outbound|{grpc_port['port']}||{host}"
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["processing_mode"]["response_body_mode"] == "BUFFERED"
    policy = _by_kind("AuthorizationPolicy")
    assert (
        envoy_filter["spec"]["workloadSelector"]["labels"]
        == policy["spec"]["selector"]["matchLabels"]
    )
