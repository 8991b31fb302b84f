"""Every Envoy config we ship passes `envoy --mode validate` with the real binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from guardrail_authz.envoyconf import TEMPLATE, EnvoyPorts, render
from tests.envoystack import envoy_binary

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize(
    "ports",
    [EnvoyPorts(), EnvoyPorts(listen_port=18080, admin_port=19901, authz_port=19191)],
    ids=["local-stack", "other-ports"],
)
def test_rendered_template_validates(tmp_path: Path, ports: EnvoyPorts) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(render(ports))
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "OK" in out.stdout + out.stderr


def test_template_settings_operators_rely_on() -> None:
    text = render(EnvoyPorts())
    for setting in (
        "transport_api_version: V3",
        "failure_mode_allow: false",
        "status_on_error: { code: ServiceUnavailable }",
        "with_request_body:",
        "http2_protocol_options: {}",
        "timeout: 0.5s",
        "port_value: 9191",
        "port_value: 8081",
        "port_value: 8080",
        "port_value: 9901",
    ):
        assert setting in text, setting
    assert "${" not in text
    assert TEMPLATE.name == "template.yaml"


def test_broken_config_is_rejected(tmp_path: Path) -> None:
    # The validate check can fail: a wrong type URL is refused by the real binary.
    config = tmp_path / "envoy.yaml"
    config.write_text(render(EnvoyPorts()).replace("ext_authz.v3.ExtAuthz", "ext_authz.v3.Nope"))
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode != 0
