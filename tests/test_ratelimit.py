"""Rate limits: the in-process token buckets, their policy syntax and their decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.ratelimit import CompiledLimit, LocalLimiter
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limit(name: str = "l", requests: int = 5, period: float = 1.0, burst: int = 0) -> CompiledLimit:
    """A principal-keyed limit (also used by the Redis tests)."""
    return CompiledLimit(name, "principal", None, requests, period, burst or requests, False)


# --- the buckets ---


def test_burst_then_refusal_then_refill() -> None:
    clock = Clock()
    lim = LocalLimiter(clock=clock)
    five = limit(requests=5, period=1.0)
    got = [lim.acquire("r", [(five, "alice")]).allowed for _ in range(6)]
    assert got == [True] * 5 + [False]
    refused = lim.acquire("r", [(five, "alice")])
    assert (refused.allowed, refused.limit, refused.retry_after) == (False, "l", 1)
    assert refused.state_header == '"l";r=0;t=1'
    assert refused.policy_header == '"l";q=5;w=1'
    clock.now += 0.2  # one token back at 5 per second
    assert lim.acquire("r", [(five, "alice")]).allowed
    assert not lim.acquire("r", [(five, "alice")]).allowed


def test_keys_and_scopes_have_their_own_buckets() -> None:
    lim = LocalLimiter(clock=Clock())
    one = limit(requests=1, period=60)
    assert lim.acquire("r", [(one, "alice")]).allowed
    assert not lim.acquire("r", [(one, "alice")]).allowed
    assert lim.acquire("r", [(one, "bob")]).allowed
    assert lim.acquire("other-route", [(one, "alice")]).allowed


def test_retry_after_is_the_wait_for_one_token_rounded_up() -> None:
    lim = LocalLimiter(clock=Clock())
    slow = limit(requests=10, period=60.0)  # a token every 6 s
    for _ in range(10):
        assert lim.acquire("r", [(slow, "a")]).allowed
    refused = lim.acquire("r", [(slow, "a")])
    assert refused.retry_after == 6
    assert refused.state_header == '"l";r=0;t=60'


def test_a_call_refused_by_one_limit_costs_the_others_nothing() -> None:
    clock = Clock()
    lim = LocalLimiter(clock=clock)
    tight, loose = limit("tight", requests=1, period=60), limit("loose", requests=3, period=60)
    limits = [(loose, "a"), (tight, "a")]
    assert lim.acquire("r", limits).allowed
    for _ in range(5):
        refused = lim.acquire("r", limits)
        assert (refused.allowed, refused.limit) == (False, "tight")
    assert refused.state_header == '"loose";r=2;t=20, "tight";r=0;t=60'
    assert refused.policy_header == '"loose";q=3;w=60, "tight";q=1;w=60'


def test_memory_is_bounded_and_idle_buckets_expire() -> None:
    clock = Clock()
    lim = LocalLimiter(max_buckets=100, clock=clock)
    one = limit(requests=1, period=10)
    for n in range(1000):
        lim.acquire("r", [(one, f"caller-{n}")])
    assert len(lim) == 100
    clock.now += 10.01  # every bucket would be full again: all are dropped
    lim.acquire("r", [(one, "someone")])
    assert len(lim) == 1


def test_a_busy_bucket_never_expires_into_a_fresh_burst() -> None:
    clock = Clock()
    lim = LocalLimiter(clock=clock)
    two = limit(requests=2, period=1.0)  # refills fully in 1 s
    allowed = 0
    for _ in range(400):  # 4 s of calls every 10 ms: 2 per second + the first burst of 2
        allowed += lim.acquire("r", [(two, "a")]).allowed
        clock.now += 0.01
    assert 9 <= allowed <= 2 + 8  # 3.99 s of refill; an expired bucket would add a burst


def test_limits_render_their_policy_item() -> None:
    assert limit("per-principal", requests=100, period=0.5).policy_item == (
        '"per-principal";q=100;w=0.5'
    )
    assert limit(requests=3, period=1, burst=6).refill == 2.0


# --- policy syntax ---

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: p}
spec:
  apiKeys:
    keys:
      - {sha256: 72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20, principal: alice}
      - {sha256: ac5bb3526d3be432ba19fb1fc0712d350c160bd2169cd24401c9fcaeaac2d860, principal: admin}
  routes:
    - name: r
      match: {paths: [/x]}
      rules:
        - {name: callers, effect: allow, when: {authenticated: true}}
        - {name: nope, effect: deny, when: {headers: [{name: x-block, present: true}]}}
      rateLimits:
LIMITS
"""
ALICE = "alice-key"  # sha256 72ee9d43...
ADMIN = "demo-admin-key"  # sha256 ac5bb352...


def _load(tmp_path: Path, limits: str) -> PolicySnapshot:
    (tmp_path / "p.yaml").write_text(POLICY.replace("LIMITS\n", limits), encoding="utf-8")
    return load_directory(tmp_path)


def _view(key: str | None = None, **headers: str) -> RequestView:
    if key is not None:
        headers["x-api-key"] = key
    return RequestView(method="GET", raw_path="/x", host="h", headers=headers)


@pytest.mark.parametrize(
    ("limit", "line_field_code"),
    [
        ("{name: a, key: nobody, requests: 1, per: 1s}", ("key", "ratelimit.key")),
        ("{name: a, key: 'header:bad header', requests: 1, per: 1s}", ("key", "ratelimit.key")),
        ("{name: a, key: global, requests: 0, per: 1s}", ("requests", "field.range")),
        ("{name: a, key: global, requests: 1, per: 1 second}", ("per", "ratelimit.period")),
        ("{name: a, key: global, requests: 1, per: 2d}", ("per", "ratelimit.period")),
        ("{name: a, key: global, requests: 1, per: 48h}", ("per", "ratelimit.period")),
        ("{name: a, key: global, requests: 1}", ("per", "field.required")),
        ("{name: a, key: global, requests: 1, per: 1s, burst: 0}", ("burst", "field.range")),
        ("{name: a, key: global, requests: 1, per: 1s, window: 1}", ("window", "field.unknown")),
        ("{name: Bad Name, key: global, requests: 1, per: 1s}", ("name", "ratelimit.name")),
    ],
)
def test_invalid_limits_name_line_and_field(
    tmp_path: Path, limit: str, line_field_code: tuple[str, str]
) -> None:
    with pytest.raises(PolicyLoadError) as info:
        _load(tmp_path, f"        - {limit}\n")
    errors = info.value.errors
    assert len(errors) == 1, errors
    field, code = line_field_code
    e = errors[0]
    assert (e.file, e.line, e.code) == ("p.yaml", 16, code), e
    assert e.field.startswith("spec.routes[0].rateLimits[0]"), e
    assert e.field.endswith(field) or e.message.endswith(f".{field}'"), e  # missing: named


def test_duplicate_limit_names_point_at_the_first(tmp_path: Path) -> None:
    limits = "        - {name: a, key: global, requests: 1, per: 1s}\n" * 2
    with pytest.raises(PolicyLoadError) as info:
        _load(tmp_path, limits)
    [e] = info.value.errors
    assert (e.code, e.line) == ("ratelimit.duplicate", 17)
    assert "p.yaml:16" in e.message


# --- decisions ---


def test_the_call_after_the_quota_is_429_with_retry_after(tmp_path: Path) -> None:
    snap = _load(
        tmp_path, "        - {name: per-principal, key: principal, requests: 2, per: 1m}\n"
    )
    lim = Runtime(LocalLimiter(clock=Clock()))
    first, second, third = (evaluate(snap, _view(ALICE), f"d{n}", lim) for n in range(3))
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert first.response_headers_add == []  # not exposed unless the policy asks
    assert (third.status, third.reason, third.rule, third.principal) == (
        429,
        "rate_limited",
        "callers",
        "alice",
    )
    headers = dict(third.deny_headers)
    assert headers["retry-after"] == "30"
    assert headers["ratelimit-policy"] == '"per-principal";q=2;w=60'
    assert headers["ratelimit"] == '"per-principal";r=0;t=60'
    assert "retry after 30 s" in third.body
    assert evaluate(snap, _view(ADMIN), "d", lim).allowed  # another principal, its own quota


def test_denied_and_unauthenticated_calls_use_no_quota(tmp_path: Path) -> None:
    snap = _load(tmp_path, "        - {name: g, key: global, requests: 1, per: 1m}\n")
    lim = Runtime(LocalLimiter(clock=Clock()))
    for _ in range(3):
        assert evaluate(snap, _view(), "d", lim).reason == "no_identity"
        assert evaluate(snap, _view(ALICE, **{"x-block": "1"}), "d", lim).reason != "rate_limited"
    assert evaluate(snap, _view(ALICE), "d", lim).allowed
    assert evaluate(snap, _view(ADMIN), "d", lim).reason == "rate_limited"  # global: shared


def test_limits_by_api_key_and_by_header(tmp_path: Path) -> None:
    limits = (
        "        - {name: k, key: apiKey, requests: 1, per: 1m}\n"
        "        - {name: t, key: 'header:X-Tenant', requests: 2, per: 1m}\n"
    )
    snap = _load(tmp_path, limits)
    lim = Runtime(LocalLimiter(clock=Clock()))
    assert evaluate(snap, _view(ALICE, **{"x-tenant": "acme"}), "d", lim).allowed
    refused = evaluate(snap, _view(ALICE, **{"x-tenant": "zeta"}), "d", lim)
    assert (refused.reason, dict(refused.deny_headers)["retry-after"]) == ("rate_limited", "60")
    assert evaluate(snap, _view(ADMIN, **{"x-tenant": "acme"}), "d", lim).allowed
    assert evaluate(snap, _view(ADMIN, **{"x-tenant": "acme"}), "d", lim).reason == (
        "rate_limited"  # the admin key still has quota, tenant acme has none
    )
    assert lim.limiter is not None
    assert ALICE not in repr(lim.limiter._buckets)  # keys are kept by hash only


def test_exposed_quota_on_allow(tmp_path: Path) -> None:
    limit = "        - {name: p, key: principal, requests: 3, per: 1s, exposeHeaders: true}\n"
    snap = _load(tmp_path, limit)
    d = evaluate(snap, _view(ALICE), "d", Runtime(LocalLimiter(clock=Clock())))
    assert d.allowed
    assert {n: v for n, v, _ in d.response_headers_add} == {
        "ratelimit-policy": '"p";q=3;w=1',
        "ratelimit": '"p";r=2;t=1',
    }


def test_without_a_limiter_limits_are_not_applied(tmp_path: Path) -> None:
    snap = _load(tmp_path, "        - {name: g, key: global, requests: 1, per: 1m}\n")
    assert all(evaluate(snap, _view(ALICE), "d").allowed for _ in range(3))


def test_limits_by_client_address(tmp_path: Path) -> None:
    snap = _load(tmp_path, "        - {name: ip, key: clientAddress, requests: 1, per: 1m}\n")
    lim = Runtime(LocalLimiter(clock=Clock()))

    def call(address: str) -> str:
        view = RequestView(
            method="GET",
            raw_path="/x",
            host="h",
            headers={"x-api-key": ALICE},
            source_address=lambda: address,
        )
        return evaluate(snap, view, "d", lim).reason

    assert call("10.0.0.1") == "allowed"
    assert call("10.0.0.1") == "rate_limited"
    assert call("10.0.0.2") == "allowed"
