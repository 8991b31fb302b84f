"""Render the shipped Envoy config template (envoy/template.yaml) for given addresses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "envoy" / "template.yaml"


@dataclass(frozen=True, slots=True)
class EnvoyPorts:
    """Where Envoy listens and what it calls; defaults are the local stack's (DESIGN.md)."""

    bind: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 9901
    authz_host: str = "127.0.0.1"
    authz_port: int = 9191
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 8081
    cluster_type: str = "STATIC"  # STRICT_DNS when the hosts are names (compose, Kubernetes)


COMPOSE = EnvoyPorts(
    bind="0.0.0.0",  # noqa: S104 - inside the compose network, Envoy faces other containers
    authz_host="guardrail-authz",
    upstream_host="upstream",
    cluster_type="STRICT_DNS",
)


def main() -> None:
    """`python -m guardrail_authz.envoyconf` rewrites envoy/compose.yaml from the template."""
    target = TEMPLATE.parent / "compose.yaml"
    header = (
        "# Generated from template.yaml by `python -m guardrail_authz.envoyconf`; do not edit.\n"
    )
    target.write_text(header + render(COMPOSE), encoding="utf-8")


def render(ports: EnvoyPorts, template: Path = TEMPLATE) -> str:
    """The template with every ${placeholder} filled; a missing one raises KeyError."""
    return Template(template.read_text(encoding="utf-8")).substitute(asdict(ports))


if __name__ == "__main__":
    main()
