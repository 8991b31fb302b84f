"""docs/observability.md and the Grafana dashboard agree with the metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from guardrail_authz.server.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "guardrail-authz-dashboard.json"
DOC = REPO / "docs" / "observability.md"


def _exported() -> set[str]:
    """Every metric family the server exports, with Prometheus' suffixes stripped."""
    m = Metrics()
    m.decision("p", "p/r", "a", True, "allowed", 0.001)
    text = m.render().decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def _family(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total|created)$", "", name)


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    used = {_family(n) for e in exprs for n in re.findall(r"\b(guardrail_[a-z_]+)", e)}
    exported = {_family(n) for n in _exported()}
    assert used - exported == set()
    # The dashboard shows every family but the build-time ones.
    assert exported - used <= {"guardrail_policy_routes", "guardrail_ready"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_exported_metric_is_documented() -> None:
    doc = DOC.read_text()
    documented = {_family(n) for n in re.findall(r"`(guardrail_[a-z_]+)`", doc)}
    missing = {_family(n) for n in _exported()} - documented
    assert not missing, f"metrics missing from docs/observability.md: {sorted(missing)}"
