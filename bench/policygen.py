"""Generate policy sets of any size, and a request mix that hits routes all over their index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "guardrail-authz/v1"
ROUTES_PER_POLICY = 500
# (policy-level host pattern, the Host a request for it carries); cycled over policies.
HOSTS = (
    ("api.example.com", "api.example.com"),
    ("*.internal.example.com", "billing.internal.example.com"),
    ("*", "www.example.org"),
)
KEYS = {"bench-reader-key": ("reader", ["reader"]), "bench-admin-key": ("admin", ["admin"])}
KINDS = 4  # literal path, one param, two params with methods, prefix


@dataclass(frozen=True, slots=True)
class Probe:
    """One request of the mix and the outcome the generated policies must give it."""

    method: str
    path: str
    host: str
    headers: dict[str, str]
    source_principal: str
    allowed: bool
    route: str | None  # expected route id, None for route_not_found


def route_path(i: int) -> tuple[str, list[str], str]:
    """(match field, templates, concrete path of a request) of route i; distinct for every i."""
    svc = f"svc{i % 97}"
    kind = i % KINDS
    if kind == 0:
        return "paths", [f"/api/{svc}/v{i % 3 + 1}/items{i}"], f"/api/{svc}/v{i % 3 + 1}/items{i}"
    if kind == 1:
        return "paths", [f"/api/{svc}/items{i}/{{id}}"], f"/api/{svc}/items{i}/4711"
    if kind == 2:
        templates = [f"/api/{svc}/orders{i}/{{order}}/lines/{{line}}", f"/api/{svc}/orders{i}"]
        return "paths", templates, f"/api/{svc}/orders{i}/o-981/lines/3?expand=sku"
    return "prefixes", [f"/assets{i}"], f"/assets{i}/img/logo.png"


def _route(i: int) -> dict[str, Any]:
    field, templates, _ = route_path(i)
    methods = ["GET", "POST"] if i % KINDS == 2 else ["GET"]
    rules: list[dict[str, Any]] = [
        {
            "name": "no-debug-override",
            "effect": "deny",
            "when": {"headers": [{"name": "x-debug-override", "present": True}]},
            "status": 403,
            "reason": "debug_override_forbidden",
        },
        {
            "name": "tenant-readers",
            "effect": "allow",
            "when": {
                "principals": ["reader", "svc-*"],
                "headers": [{"name": "x-tenant", "prefix": "t-"}],
            },
        },
        {"name": "admins", "effect": "allow", "when": {"roles": ["admin"]}},
        {
            "name": "mesh-frontend",
            "effect": "allow",
            "when": {"sourcePrincipals": [f"spiffe://cluster.local/ns/team{i % 7}/sa/*"]},
        },
    ]
    route: dict[str, Any] = {
        "name": f"r{i}",
        "action": f"svc{i % 97}.op{i}",
        "match": {"methods": methods, field: templates},
        "rules": rules,
    }
    if i % 5 == 0:
        route["onAllow"] = {"requestHeaders": {"set": [{"name": "x-route", "value": f"r{i}"}]}}
    return route


def documents(n_routes: int) -> list[dict[str, Any]]:
    """An ApiKeySet and ceil(n / ROUTES_PER_POLICY) GuardrailPolicies holding n routes."""
    keys = [
        {"sha256": hashlib.sha256(k.encode()).hexdigest(), "principal": p, "roles": roles}
        for k, (p, roles) in KEYS.items()
    ]
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": API_VERSION,
            "kind": "ApiKeySet",
            "metadata": {"name": "bench-keys", "version": "1"},
            "spec": {"keys": keys},
        }
    ]
    for p, start in enumerate(range(0, n_routes, ROUTES_PER_POLICY)):
        stop = min(n_routes, start + ROUTES_PER_POLICY)
        docs.append(
            {
                "apiVersion": API_VERSION,
                "kind": "GuardrailPolicy",
                "metadata": {"name": f"bench-{p:03d}", "version": "1"},
                "spec": {
                    "hosts": [HOSTS[p % len(HOSTS)][0]],
                    "apiKeys": {"headers": ["x-api-key"], "keySets": ["bench-keys"]},
                    "routes": [_route(i) for i in range(start, stop)],
                },
            }
        )
    return docs


def write_directory(n_routes: int, directory: Path) -> Path:
    """Write the generated documents as one YAML file per document; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for k, doc in enumerate(documents(n_routes)):
        text = yaml.safe_dump(doc, sort_keys=False)
        (directory / f"{k:03d}-{doc['metadata']['name']}.yaml").write_text(text, encoding="utf-8")
    return directory


def probes(n_routes: int, base_headers: dict[str, str], count: int = 40) -> list[Probe]:
    """`count` requests spread evenly over routes 0..n-1, cycling route kinds and outcomes."""
    out: list[Probe] = []
    for j in range(count):
        i = min(n_routes - 1, (j * n_routes // count) // KINDS * KINDS + j % KINDS)
        out.append(_probe(i, j % 6, n_routes, base_headers))
    return out


def _probe(i: int, variant: int, n_routes: int, base: dict[str, str]) -> Probe:
    policy = i // ROUTES_PER_POLICY
    host = HOSTS[policy % len(HOSTS)][1]
    _, _, path = route_path(i)
    route: str | None = f"bench-{policy:03d}/r{i}"
    headers = {k: v for k, v in base.items() if k != "x-api-key"}
    headers |= {":authority": host, ":path": path, "x-tenant": "t-acme"}
    source = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
    allowed = True
    if variant == 0:  # reader with tenant header: allowed by tenant-readers
        headers["x-api-key"] = "bench-reader-key"
    elif variant == 1:  # admin: allowed by admins
        headers["x-api-key"] = "bench-admin-key"
    elif variant == 2:  # mesh caller without key: allowed by mesh-frontend
        source = f"spiffe://cluster.local/ns/team{i % 7}/sa/web"
    elif variant == 3:  # reader sending the forbidden header: denied by the deny rule
        headers |= {"x-api-key": "bench-reader-key", "x-debug-override": "1"}
        allowed = False
    elif variant == 4:  # reader without tenant header: no rule matches
        headers["x-api-key"] = "bench-reader-key"
        del headers["x-tenant"]
        allowed = False
    else:  # an unknown path next to the route: route_not_found
        path = path.split("?", 1)[0] + "/nope/extra"
        if i % KINDS == 3:  # a prefix route swallows any deeper path
            path = f"/unrouted{n_routes}/x"
        route, allowed = None, False
    del n_routes
    return Probe("GET", path, host, headers, source, allowed, route)
