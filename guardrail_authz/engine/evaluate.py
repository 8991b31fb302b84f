"""evaluate(snapshot, request): the pure policy decision for one request."""

from __future__ import annotations

import hashlib
import json
import logging
import time

from guardrail_authz.engine import explain
from guardrail_authz.engine.caller import Caller
from guardrail_authz.engine.decision import (
    DECISION_ID_HEADER,
    GUARDRAIL_PREFIX,
    PRINCIPAL_HEADER,
    REASON_HEADER,
    ROLES_HEADER,
    Decision,
    PendingLimit,
    WouldDeny,
)
from guardrail_authz.engine.identify import identify
from guardrail_authz.engine.ratelimit import CompiledLimit, LimitOutcome
from guardrail_authz.engine.request import BadRequestError, RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.identity.xfcc import client_uri
from guardrail_authz.payload.detect import Hit
from guardrail_authz.payload.mask import MaskPlan
from guardrail_authz.payload.plan import PayloadDeniedError, check_payload
from guardrail_authz.policy.matchers import claim_text
from guardrail_authz.policy.snapshot import CompiledRoute, CompiledRule, PolicySnapshot

log = logging.getLogger(__name__)
_NO_ROLES: frozenset[str] = frozenset()
XFCC_HEADER = "x-forwarded-client-cert"
_OFFLINE = Runtime()  # no rate limits; JWTs checked against inline JWKS only
_ERRORS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


def evaluate(
    snapshot: PolicySnapshot,
    view: RequestView,
    decision_id: str,
    runtime: Runtime | None = None,
    trace: list[str] | None = None,
) -> Decision:
    """Decide one request; never raises (internal errors fail closed unless policy says open).

    `runtime` is the server's state (rate-limit buckets, fetched JWKS, verified tokens);
    without it (offline evaluation) rate limits are not applied and only inline JWKS count.
    `trace`, when given, receives the lines that explain the decision (`eval --explain`).
    """
    if trace is None:
        return _evaluate(snapshot, view, decision_id, runtime, None)
    d = _evaluate(snapshot, view, decision_id, runtime, trace)
    trace.append(explain.outcome_line(d))
    return d


def _evaluate(
    snapshot: PolicySnapshot,
    view: RequestView,
    decision_id: str,
    runtime: Runtime | None,
    trace: list[str] | None,
) -> Decision:
    route: CompiledRoute | None = None
    try:
        segments = view.segments
        route = snapshot.index.lookup(view.host, view.port, segments, view.method)
        if route is None:
            if trace is not None:
                trace.append(
                    f"route: none matches {view.method} host {view.host!r} port {view.port} "
                    f"path {view.raw_path.split('?', 1)[0]!r}"
                )
            return _deny(
                snapshot.version,
                decision_id,
                None,
                403,
                "route_not_found",
                "no route matches this request",
            )
        if trace is not None:
            trace.append(f"route: {route.id} (action {route.action!r})")
        return _decide(snapshot, view, decision_id, route, runtime or _OFFLINE, trace)
    except BadRequestError as bad:
        if trace is not None:
            trace.append(f"request refused before any rule: {bad.status} {bad.reason}")
        return _refuse(snapshot, decision_id, route, bad)
    except Exception:
        log.exception("evaluation failed (decision %s)", decision_id)
        if route is not None and route.policy.fail_open:
            try:
                return _fail_open(snapshot, view, decision_id, route, runtime or _OFFLINE)
            except Exception:
                log.exception("fail-open decision failed, failing closed (%s)", decision_id)
        return _deny(
            snapshot.version,
            decision_id,
            route,
            500,
            "internal_error",
            "the guardrail could not evaluate this request",
        )


def _decide(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    runtime: Runtime,
    trace: list[str] | None,
) -> Decision:
    policy = route.policy
    source = view.source_principal or None
    if policy.xfcc_trusted is not None and policy.xfcc_trusted.matches(source):
        forwarded = view.headers.get(XFCC_HEADER)
        if forwarded is not None:  # the trusted proxy speaks for its client
            source = client_uri(forwarded)
    caller = Caller(None, _NO_ROLES, "", source, trace)
    d = _judge(snapshot, view, did, route, runtime, caller)
    if not d.allowed and route.monitor is not None and not caller.by_rule and d.status < 500:
        d = _monitored(snapshot, view, did, route, runtime, caller, d)
    d.actions = caller.actions
    monitored = caller.monitored
    d.monitored = monitored
    if len(monitored) > caller.reasoned:  # each would-deny also named among the reasons
        d.reasons.extend(f"would_deny:{w.reason}" for w in monitored[caller.reasoned :])
        caller.reasoned = len(monitored)
    d.credential = caller.credential
    d.payload_seconds = caller.payload_seconds
    return d


def _monitored(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    runtime: Runtime,
    caller: Caller,
    denied: Decision,
) -> Decision:
    """A denial by a route in monitor mode: recorded as a would-deny and the request goes on
    as if that guardrail were absent, unless this principal is in the share enforced."""
    rollout = route.monitor
    assert rollout is not None  # noqa: S101 - checked by the caller
    enforced = rollout.enforced_for(caller.principal)
    trace = caller.trace
    if trace is not None:
        what = f"route guardrail ({denied.status} {denied.reason})"
        trace.append(explain.monitor_line(what, rollout, enforced))
    if enforced:
        return denied
    caller.monitored.append(WouldDeny(denied.status, denied.reason, denied.rule, rollout.scope))
    if not caller.ruled:
        # Refused before the rules (a credential, the payload): the rules still decide, so
        # a deny rule enforced on its own still denies.
        if trace is not None:
            trace.append("monitor mode: the rules still run")
        d = _ruled(snapshot, view, did, route, runtime, caller)
        if d.allowed or caller.by_rule or d.status >= 500:
            return d
        caller.monitored.append(WouldDeny(d.status, d.reason, d.rule, rollout.scope))
        if trace is not None:
            trace.append(f"monitor mode: would deny ({d.status} {d.reason}), not enforced")
    d = _allow(snapshot, view, did, route, None, caller, runtime)
    d.reason = "allowed_in_monitor_mode"
    return d


def _judge(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    runtime: Runtime,
    caller: Caller,
) -> Decision:
    """The decision before the route's monitor mode is applied."""
    policy = route.policy
    trace = caller.trace
    if route.uses_identity:
        refused = identify(policy, view, runtime, caller)
        if refused is not None:
            return _deny(snapshot.version, did, route, 401, refused[0], refused[1])
    elif trace is not None:
        trace.append("identity: not looked at (no rule of this route needs it)")
    monitored: list[Hit] = []
    payload = route.payload
    if payload is not None and not (caller.principal is None and route.identity_required):
        # Only callers who could be allowed get the payload checked (and told what is wrong).
        began = time.perf_counter()
        try:
            found = check_payload(payload, view)
        except BadRequestError as bad:
            caller.payload_seconds = time.perf_counter() - began
            if trace is not None:
                trace.append(f"payload: refused {bad.status} {bad.reason}")
            return _refuse(snapshot, did, route, bad, caller.principal)
        caller.payload_seconds = time.perf_counter() - began
        caller.actions = found.actions
        monitored = found.monitored
        if trace is not None:
            acts = ", ".join(found.actions) or "none"
            hits = ", ".join(f"{h.detector} in {h.field}" for h in monitored)
            trace.append(
                f"payload: accepted (actions: {acts})" + (f"; monitored: {hits}" if hits else "")
            )
    decision = _ruled(snapshot, view, did, route, runtime, caller)
    if monitored:
        decision.reasons.extend(f"monitor:{h.detector}_detected:{h.field}" for h in monitored)
    return decision


def _ruled(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    runtime: Runtime,
    caller: Caller,
) -> Decision:
    """The rules' verdict once identity and payload are known."""
    caller.ruled = True
    trace = caller.trace
    for rule in route.deny_rules:
        if _matches(rule, caller, view):
            if trace is not None:
                trace.append(explain.rule_line(rule, caller, view, True))
            mon = rule.monitor
            if mon is not None:
                enforced = mon.enforced_for(caller.principal)
                if trace is not None:
                    trace.append(explain.monitor_line(f"deny rule {rule.name!r}", mon, enforced))
                if not enforced:
                    caller.monitored.append(
                        WouldDeny(rule.status, rule.reason, rule.name, mon.scope)
                    )
                    continue
            caller.by_rule = True
            d = _deny(
                snapshot.version,
                did,
                route,
                rule.status,
                rule.reason,
                rule.message or "denied by policy",
                caller.principal,
            )
            d.rule = rule.name
            return d
        if trace is not None:
            trace.append(explain.rule_line(rule, caller, view, False))
    for rule in route.allow_rules:
        if not _matches(rule, caller, view):
            if trace is not None:
                trace.append(explain.rule_line(rule, caller, view, False))
            continue
        if trace is not None:
            trace.append(explain.rule_line(rule, caller, view, True))
        if route.rate_limits and (runtime.limiter is not None or runtime.shared):
            return _limited(snapshot, view, did, route, rule, caller, runtime)
        return _allow(snapshot, view, did, route, rule, caller, runtime)
    if trace is not None:
        trace.append("no allow rule matches: default deny")
    if caller.principal is None and route.identity_required:
        return _deny(
            snapshot.version,
            did,
            route,
            401,
            "no_identity",
            "this action needs an identity (API key or mTLS)",
        )
    return _deny(
        snapshot.version,
        did,
        route,
        403,
        "no_rule_matched",
        "no rule allows this caller to do this action",
        caller.principal,
    )


def _matches(rule: CompiledRule, caller: Caller, view: RequestView) -> bool:
    if rule.authenticated is not None and rule.authenticated != (caller.principal is not None):
        return False
    if rule.has_principals and not rule.principals.matches(caller.principal):
        return False
    if rule.has_sources and not rule.source_principals.matches(caller.source):
        return False
    if rule.roles and rule.roles.isdisjoint(caller.roles):
        return False
    if rule.headers:
        for cond in rule.headers:
            if not cond.holds(view.headers.get(cond.name)):
                return False
    if rule.claims:
        for claim in rule.claims:
            if not claim.holds(caller.claims):
                return False
    if rule.actions is not None:
        acts = caller.actions
        if not acts:
            return False
        matches = rule.actions.matches
        if not (all(map(matches, acts)) if rule.allow else any(map(matches, acts))):
            return False
    if rule.query:
        return all(cond.holds(view.query_param(cond.name)) for cond in rule.query)
    return True


def _limited(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    rule: CompiledRule,
    caller: Caller,
    runtime: Runtime,
) -> Decision:
    """An allowed call on a route with rate limits: allowed only if every limit has quota.
    Counted here with the process's buckets, or left pending for the shared store."""
    limits = [(limit, _limit_key(limit, caller, view)) for limit in route.rate_limits]

    def refuse(outcome: LimitOutcome) -> Decision:
        mon = route.monitor
        if mon is not None and not mon.enforced_for(caller.principal):
            caller.monitored.append(WouldDeny(429, "rate_limited", rule.name, mon.scope))
            allowed.reasons.append("would_deny:rate_limited")  # settled after _decide maybe
            caller.reasoned += 1
            allowed.monitored = caller.monitored
            return allowed
        d = _deny(
            snapshot.version,
            did,
            route,
            429,
            "rate_limited",
            f"rate limit {outcome.limit!r} exceeded; retry after {outcome.retry_after} s",
            caller.principal,
        )
        d.rule = rule.name
        d.deny_headers += [
            ("retry-after", str(outcome.retry_after)),
            ("ratelimit-policy", outcome.policy_header),
            ("ratelimit", outcome.state_header),
        ]
        return d

    def unavailable() -> Decision:
        message = "rate limits cannot be counted right now"
        d = _deny(snapshot.version, did, route, 503, "rate_limit_unavailable", message)
        d.rule, d.principal = rule.name, caller.principal
        return d

    expose = any(limit.expose for limit in route.rate_limits)
    pending = PendingLimit(route.id, limits, refuse, unavailable, expose)
    allowed = _allow(snapshot, view, did, route, rule, caller, runtime)
    allowed.pending = pending
    if runtime.limiter is None:
        return allowed  # the server counts it in the shared store, then settles it
    return settle(allowed, runtime.limiter.acquire(route.id, limits), fail_open=False)


def settle(allowed: Decision, outcome: LimitOutcome | None, *, fail_open: bool) -> Decision:
    """The final decision for a pending allow, given the limits' outcome (None: the store
    could not be asked, settled by `fail_open`)."""
    pending = allowed.pending
    if pending is None:
        return allowed
    allowed.pending = None
    if outcome is None:
        if not fail_open:
            return pending.unavailable()
        allowed.reasons.append("rate_limit_store_unavailable")
        return allowed
    if not outcome.allowed:
        return pending.refuse(outcome)
    if pending.expose:
        allowed.response_headers_add += [
            ("ratelimit-policy", outcome.policy_header, "overwrite"),
            ("ratelimit", outcome.state_header, "overwrite"),
        ]
    return allowed


def _limit_key(limit: CompiledLimit, caller: Caller, view: RequestView) -> str:
    """The value a limit counts by; callers without it share the limit's "" bucket."""
    kind = limit.key
    if kind == "principal":
        return caller.principal or ""
    if kind == "sourcePrincipal":
        return caller.source or ""
    if kind == "apiKey":  # by the key's hash: the key itself is never kept for this
        return hashlib.sha256(caller.key.encode()).hexdigest() if caller.key else ""
    if kind == "header":
        return view.headers.get(limit.header or "") or ""
    if kind == "claim":
        return claim_text(caller.claims, tuple((limit.header or "").split("."))) or ""
    if kind == "clientAddress":
        return view.source_address
    return ""  # global: one bucket for every caller of the route


def _describe(d: Decision, route: CompiledRoute | None) -> None:
    if route is not None:
        d.policy, d.route, d.action = route.policy.name, route.id, route.action


def _allow(
    snapshot: PolicySnapshot,
    view: RequestView,
    did: str,
    route: CompiledRoute,
    rule: CompiledRule | None,
    caller: Caller,
    runtime: Runtime,
) -> Decision:
    """An allow by `rule` (None: a monitor-mode route let a would-deny through)."""
    d = Decision(True, 200, "allowed", did, snapshot.version, principal=caller.principal)
    _describe(d, route)
    if rule is not None:
        d.rule = rule.name
        d.reasons.append(rule.allow_reason)
    m = route.mutations
    sets = d.upstream_headers_set
    sets.extend(m.static_sets)
    for name, value, mode in m.dynamic_sets:
        # append/ifAbsent are resolved here against the inbound headers, so Envoy only ever
        # overwrites: Envoy 1.40's ext_authz ignores append_action on request headers.
        current = view.headers.get(name)
        if current is None:
            sets.append((name, value, "overwrite"))
        elif mode == "append":
            sets.append((name, f"{current},{value}", "overwrite"))
    identity: tuple[str, ...] = ()
    if m.propagate_identity and caller.principal is not None:
        sets.append((PRINCIPAL_HEADER, caller.principal, "overwrite"))
        identity = (PRINCIPAL_HEADER,)
        if caller.roles_header:
            sets.append((ROLES_HEADER, caller.roles_header, "overwrite"))
            identity = (PRINCIPAL_HEADER, ROLES_HEADER)
    sets.append((DECISION_ID_HEADER, did, "overwrite"))
    remove = d.upstream_headers_remove
    for path, header in m.claim_headers:
        text = claim_text(caller.claims, path)
        if text is not None:
            sets.append((header, text, "overwrite"))
        elif header in view.headers:
            remove.append(header)  # no such claim: the client's own value must not pass
    ours = m.set_names
    remove.extend(h for h in m.remove_headers if h not in ours and h not in identity)
    _strip_inbound(remove, route, view, ours, identity)
    if route.mask is not None and route.mask.headers:
        _mask_headers(route.mask, view, caller, d, runtime.mask_key)
    if m.response_headers:
        d.response_headers_add.extend(m.response_headers)
    if m.query_set:
        d.query_set.extend(m.query_set)
    if m.query_remove:
        d.query_remove.extend(m.query_remove)
    return d


def _mask_headers(
    plan: MaskPlan, view: RequestView, caller: Caller, d: Decision, key: bytes
) -> None:
    """The route's request-header masks for this caller: each header present is removed or
    overwritten upstream with its masked value."""
    principal, roles, trace = caller.principal, caller.roles, caller.trace
    headers, sets, remove = view.headers, d.upstream_headers_set, d.upstream_headers_remove
    taken: set[str] | None = None
    for rule in plan.headers:
        value = headers.get(rule.name)
        if value is None:
            continue
        if taken is None:  # the first header found: is the caller exempt from them all?
            if plan.exempt(principal, roles):
                if trace is not None:
                    trace.append("mask: headers left as they are (this caller is exempt)")
                return
            taken = {s[0] for s in sets}  # what this allow already sets or removes stays so
            taken.update(remove)
        if rule.exemption is not None and rule.exemption.applies(principal, roles):
            if trace is not None:
                trace.append(f"mask: header {rule.name} left as it is (this caller is exempt)")
            continue
        if rule.name in taken:
            continue
        masked = rule.masked(value, key)
        if masked is None:
            remove.append(rule.name)
        elif masked != value:
            sets.append((rule.name, masked, "overwrite"))
        if trace is not None:
            how = "removed" if rule.style is None else f"masked ({rule.style.kind})"
            trace.append(f"mask: header {rule.name} {how}")


def _challenge(route: CompiledRoute | None, reason: str) -> str:
    """The WWW-Authenticate challenge of a 401: Bearer for policies with a JWT provider."""
    if route is not None and route.policy.jwt is not None:
        if reason.startswith("token_"):
            return 'Bearer realm="guardrail-authz", error="invalid_token"'
        return 'Bearer realm="guardrail-authz"'
    header = route.policy.key_headers[0] if route is not None else "x-api-key"
    return f'APIKey realm="guardrail-authz", header="{header}"'


def reject(version: str, did: str, status: int, reason: str, message: str) -> Decision:
    """A denial made before any route was looked at (malformed input, no policy loaded)."""
    return _deny(version, did, None, status, reason, message)


def _strip_inbound(
    remove: list[str],
    route: CompiledRoute,
    view: RequestView,
    ours: frozenset[str],
    identity: tuple[str, ...] = (),
) -> None:
    """API keys (when the policy strips them) and inbound x-guardrail-* headers we do not set."""
    headers = view.headers
    policy = route.policy
    if policy.strip_keys:
        remove.extend(h for h in policy.key_headers if h in headers and h not in ours)
    if policy.jwt is not None and policy.jwt.strip:
        remove.extend(h for h in policy.jwt.credential_headers if h in headers and h not in ours)
    known = view.guardrail_names
    if known is not None:
        remove.extend(
            h for h in known if h not in ours and h not in identity and h != DECISION_ID_HEADER
        )
        return
    # Inbound x-guardrail-* headers never reach the upstream unless we set them ourselves.
    # One C-level join, then str.find: no Python loop over every header name.
    names = "\n".join(headers)
    i = names.find(GUARDRAIL_PREFIX)
    while i != -1:
        end = names.find("\n", i)
        if i == 0 or names[i - 1] == "\n":
            h = names[i:] if end == -1 else names[i:end]
            if h not in ours and h not in identity and h != DECISION_ID_HEADER:
                remove.append(h)
        if end == -1:
            break
        i = names.find(GUARDRAIL_PREFIX, end)


def _fail_open(
    snapshot: PolicySnapshot, view: RequestView, did: str, route: CompiledRoute, runtime: Runtime
) -> Decision:
    """Allow after an internal error (failMode: open), still stripping keys and spoofed headers
    and masking the headers the route masks (as for an anonymous caller: nobody is exempt)."""
    d = Decision(True, 200, "internal_error_fail_open", did, snapshot.version)
    _describe(d, route)
    d.reasons.append("internal_error_fail_open")
    d.upstream_headers_set.append((DECISION_ID_HEADER, did, "overwrite"))
    _strip_inbound(d.upstream_headers_remove, route, view, frozenset())
    if route.mask is not None and route.mask.headers:
        _mask_headers(route.mask, view, Caller(None, _NO_ROLES, "", None), d, runtime.mask_key)
    return d


def _refuse(
    snapshot: PolicySnapshot,
    did: str,
    route: CompiledRoute | None,
    bad: BadRequestError,
    principal: str | None = None,
) -> Decision:
    """The denial for a request whose attributes or payload a guardrail refused; what a
    payload guardrail found (field, rule, detector, signature) goes into the deny body and,
    as `name:value` reasons, into the audit record."""
    detail = bad.detail if isinstance(bad, PayloadDeniedError) else None
    d = _deny(snapshot.version, did, route, bad.status, bad.reason, bad.message, principal, detail)
    if detail:
        d.reasons.extend(f"{k}:{v}" for k, v in detail.items() if k != "detector")
    return d


def _deny(
    version: str,
    did: str,
    route: CompiledRoute | None,
    status: int,
    reason: str,
    message: str,
    principal: str | None = None,
    detail: dict[str, str] | None = None,
) -> Decision:
    d = Decision(False, status, reason, did, version, principal=principal, message=message)
    _describe(d, route)
    d.reasons.append(reason)
    error = _ERRORS.get(status, "denied")
    body = {"error": error, "reason": reason, "message": message, "decision_id": did}
    if detail:
        body.update(detail)
    d.deny_headers = [
        ("content-type", "application/json"),
        (DECISION_ID_HEADER, did),
        (REASON_HEADER, reason),
    ]
    if status == 401:
        d.deny_headers.append(("www-authenticate", _challenge(route, reason)))
    d.body = json.dumps(body, separators=(",", ":"))
    return d
