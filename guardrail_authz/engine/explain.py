"""Human-readable decision traces: why a rule did or did not match, and what was decided."""

from __future__ import annotations

from guardrail_authz.engine.caller import Caller
from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.request import RequestView
from guardrail_authz.policy.snapshot import CompiledRule, Rollout

_MAX_SHOWN = 60


def _shown(value: str | None) -> str:
    if value is None:
        return "none"
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "…")


def why_not(rule: CompiledRule, caller: Caller, view: RequestView) -> str:
    """The first condition of `rule` that this request does not meet (same order as the
    evaluator checks them); "" when every condition holds."""
    if rule.authenticated is not None and rule.authenticated != (caller.principal is not None):
        want = "an authenticated caller" if rule.authenticated else "an anonymous caller"
        return f"authenticated: needs {want}"
    if rule.has_principals and not rule.principals.matches(caller.principal):
        return f"principals: {_shown(caller.principal)} is not listed"
    if rule.has_sources and not rule.source_principals.matches(caller.source):
        return f"sourcePrincipals: {_shown(caller.source)} is not listed"
    if rule.roles and rule.roles.isdisjoint(caller.roles):
        have = ",".join(sorted(caller.roles)) or "none"
        return f"roles: needs one of {','.join(sorted(rule.roles))}, caller has {have}"
    for cond in rule.headers:
        if not cond.holds(view.headers.get(cond.name)):
            return f"headers: {cond.name} {cond.op.value} {cond.value!r} does not hold"
    for claim in rule.claims:
        if not claim.holds(caller.claims):
            return f"claims: {'.'.join(claim.path)} {claim.op} does not hold"
    if rule.actions is not None:
        acts = caller.actions
        if not acts:
            return "actions: the request has no actions"
        matches = rule.actions.matches
        if rule.allow and not all(map(matches, acts)):
            missing = [a for a in acts if not matches(a)]
            return f"actions: {', '.join(missing)} not allowed"
        if not rule.allow and not any(map(matches, acts)):
            return f"actions: none of {', '.join(acts)} listed"
    for cond in rule.query:
        if not cond.holds(view.query_param(cond.name)):
            return f"query: {cond.name} {cond.op.value} {cond.value!r} does not hold"
    return ""


def rule_line(rule: CompiledRule, caller: Caller, view: RequestView, matched: bool) -> str:
    """One trace line for a rule that was looked at."""
    kind = "allow" if rule.allow else "deny"
    if not matched:
        return f"{kind} rule {rule.name!r}: no match ({why_not(rule, caller, view)})"
    if rule.allow:
        return f"{kind} rule {rule.name!r}: matches"
    return f"{kind} rule {rule.name!r}: matches → {rule.status} {rule.reason}"


def monitor_line(what: str, rollout: Rollout, enforced: bool) -> str:
    """A trace line for a denial met by a guardrail in monitor mode."""
    share = f"{rollout.percent:g}% enforced" if rollout.percent else "monitor only"
    if enforced:
        return f"{what}: monitor mode ({rollout.scope}, {share}), this principal is enforced"
    return f"{what}: monitor mode ({rollout.scope}, {share}) → would deny, not enforced"


def outcome_line(d: Decision) -> str:
    """The trace's last line: what was decided."""
    verdict = "allow" if d.allowed else "deny"
    parts = [f"decision: {verdict} {d.status} {d.reason}"]
    if d.rule:
        parts.append(f"rule {d.rule!r}")
    if d.principal:
        parts.append(f"principal {d.principal!r}")
    if d.monitored:
        parts.append("not enforced: " + ", ".join(f"{w.reason}" for w in d.monitored))
    parts.append(f"policy version {d.policy_version}")
    return "; ".join(parts)
