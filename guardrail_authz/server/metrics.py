"""Prometheus metrics: decisions, latency, reloads and the active policy version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    """All metrics of one process, in their own registry (tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "guardrail_decisions",
            "Decisions by policy, route and outcome.",
            ("policy", "route", "outcome", "reason"),
            registry=r,
        )
        self.latency = Histogram(
            "guardrail_decision_seconds",
            "Time to decide one Check, from request bytes to response bytes.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter(
            "guardrail_policy_reloads", "Policy loads by result.", ("result",), registry=r
        )
        self.active = Gauge(
            "guardrail_policy_active_info",
            "The active policy snapshot version (value 1).",
            ("version",),
            registry=r,
        )
        self.routes = Gauge("guardrail_policy_routes", "Routes in the active snapshot.", registry=r)
        self.ready = Gauge("guardrail_ready", "1 once a valid policy set is loaded.", registry=r)
        self._children: dict[tuple[str, str, str, str], Counter] = {}
        self._version: str | None = None

    def decision(self, policy: str, route: str, allowed: bool, reason: str, seconds: float) -> None:
        """Count one decision and observe its latency (label children cached)."""
        key = (policy, route, "allow" if allowed else "deny", reason)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.decisions.labels(*key)
        child.inc()
        self.latency.observe(seconds)

    def policy_loaded(self, version: str, routes: int) -> None:
        """Record a successful load and the now-active version."""
        self.reloads.labels("success").inc()
        if self._version is not None and self._version != version:
            self.active.remove(self._version)
        self._version = version
        self.active.labels(version).set(1)
        self.routes.set(routes)
        self.ready.set(1)

    def policy_failed(self) -> None:
        """Record a load that was rejected."""
        self.reloads.labels("failure").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
