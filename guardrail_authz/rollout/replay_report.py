"""What a replay found (totals, grouped changes, examples) and its text and JSON reports."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Change kinds, in the order a record is classified by (the first that applies).
CHANGE_KINDS = ("allow_to_deny", "deny_to_allow", "status", "reason", "mutations", "monitor")
_KIND_TEXT = {
    "allow_to_deny": "allow→deny",
    "deny_to_allow": "deny→allow",
    "status": "status",
    "reason": "reason",
    "mutations": "mutations",
    "monitor": "monitor",
}
MALFORMED_SHOWN = 10  # malformed lines named in the text report
# Response headers that carry a rate limit's state, which replay does not reproduce.
RUNTIME_HEADERS = frozenset({"ratelimit", "ratelimit-policy"})


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line of the log that is not a usable decision record."""

    line: int
    problem: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """One side of a comparison: what was (or would be) decided."""

    outcome: str  # "allow" | "deny"
    status: int
    reason: str
    rule: str | None
    route: str | None
    would_deny: tuple[tuple[str, str, str], ...] = ()  # (status, reason, rule), sorted

    def text(self) -> str:
        """E.g. 'deny 403 no_rule_matched' or 'allow 200 allowed [rule readers]'."""
        rule = f" [rule {self.rule}]" if self.rule else ""
        held = "".join(f" (would deny {s} {r})" for s, r, _ in self.would_deny)
        return f"{self.outcome} {self.status} {self.reason}{rule}{held}"

    def to_json(self) -> dict[str, Any]:
        """As in the JSON report."""
        return {
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "route": self.route,
            "would_deny": [{"status": s, "reason": r, "rule": u} for s, r, u in self.would_deny],
        }


@dataclass(frozen=True, slots=True)
class Example:
    """One changed record, as the report shows it."""

    decision_id: str
    time: str | None
    method: str | None
    path: str | None
    principal: str | None
    before: Verdict
    after: Verdict
    mutations: tuple[dict[str, Any], dict[str, Any]] | None = None  # recorded, candidate

    def to_json(self) -> dict[str, Any]:
        """As in the JSON report."""
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "principal": self.principal,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
        }
        if self.mutations is not None:
            out["mutations_before"], out["mutations_after"] = self.mutations
        return out


@dataclass(slots=True)
class Group:
    """Changes of one kind between the same routes, with the same candidate rule or reason."""

    kind: str
    recorded_route: str | None
    candidate_route: str | None
    cause: str  # the candidate's rule, else its reason
    count: int = 0
    examples: list[Example] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As in the JSON report."""
        return {
            "kind": self.kind,
            "recorded_route": self.recorded_route,
            "candidate_route": self.candidate_route,
            "cause": self.cause,
            "count": self.count,
            "examples": [e.to_json() for e in self.examples],
        }


@dataclass(slots=True)
class ReplayResult:
    """Totals and grouped changes of one replay."""

    candidate_version: str
    read: int = 0  # decision records
    replayed: int = 0
    unchanged: int = 0
    changed: Counter[str] = field(default_factory=Counter)
    not_reevaluable: Counter[str] = field(default_factory=Counter)
    malformed: list[Malformed] = field(default_factory=list)  # the first ones
    malformed_count: int = 0
    other_events: Counter[str] = field(default_factory=Counter)
    groups: dict[tuple[str, str, str, str], Group] = field(default_factory=dict)

    @property
    def any_change(self) -> bool:
        """True when some replayed record would be decided differently."""
        return bool(self.changed)

    def ordered_groups(self) -> list[Group]:
        """Groups by kind (CHANGE_KINDS order), then largest first."""
        rank = {k: i for i, k in enumerate(CHANGE_KINDS)}
        return sorted(
            self.groups.values(),
            key=lambda g: (rank.get(g.kind, 99), -g.count, g.recorded_route or "", g.cause),
        )


def monitored(items: object) -> tuple[tuple[str, str, str], ...]:
    """Recorded or candidate `would_deny` entries as comparable (status, reason, rule)."""
    if not isinstance(items, list):
        return ()
    return tuple(
        sorted(
            (str(w.get("status")), str(w.get("reason")), str(w.get("rule")))
            for w in items
            if isinstance(w, dict)
        )
    )


def comparable_mutations(value: object) -> dict[str, Any]:
    """Mutations as compared: rate-limit state headers left out, lists sorted, empty parts
    dropped."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for part, items in value.items():
        kept: object = items
        if isinstance(items, dict):
            kept = {k: v for k, v in items.items() if k not in RUNTIME_HEADERS}
        elif isinstance(items, list):
            kept = sorted(str(v) for v in items)
        if kept:
            out[str(part)] = kept
    return out


def change_kind(
    before: Verdict,
    after: Verdict,
    recorded_mutations: dict[str, Any] | None,
    candidate_mutations: dict[str, Any],
) -> str | None:
    """The first of CHANGE_KINDS between a recorded verdict and the candidate's, or None.
    Mutations are compared on allows whose record has them (None: recorded without)."""
    if before.outcome != after.outcome:
        return "allow_to_deny" if before.outcome == "allow" else "deny_to_allow"
    if before.status != after.status:
        return "status"
    if before.reason != after.reason:
        return "reason"
    recorded = recorded_mutations
    if after.outcome == "allow" and recorded is not None and recorded != candidate_mutations:
        return "mutations"
    if before.would_deny != after.would_deny:
        return "monitor"
    return None


def to_json(result: ReplayResult, candidate: str, audit_log: str) -> dict[str, Any]:
    """The replay as the JSON object `replay --json` prints."""
    return {
        "candidate": {"source": candidate, "version": result.candidate_version},
        "audit_log": audit_log,
        "totals": {
            "read": result.read,
            "replayed": result.replayed,
            "unchanged": result.unchanged,
            "changed": sum(result.changed.values()),
            "changed_by_kind": {k: result.changed[k] for k in CHANGE_KINDS if result.changed[k]},
            "not_reevaluable": sum(result.not_reevaluable.values()),
            "not_reevaluable_by_reason": dict(sorted(result.not_reevaluable.items())),
            "malformed": result.malformed_count,
            "other_events": dict(sorted(result.other_events.items())),
        },
        "malformed": [{"line": m.line, "problem": m.problem} for m in result.malformed],
        "changes": [g.to_json() for g in result.ordered_groups()],
    }


def render_json(result: ReplayResult, candidate: str, audit_log: str) -> str:
    """The JSON report, indented."""
    return json.dumps(to_json(result, candidate, audit_log), indent=2, ensure_ascii=False)


def _counts(counter: Counter[str], order: tuple[str, ...] = ()) -> str:
    keys = [k for k in order if counter[k]] or sorted(counter)
    return ", ".join(f"{_KIND_TEXT.get(k, k)} {counter[k]}" for k in keys if counter[k])


def render_text(result: ReplayResult, candidate: str, audit_log: str) -> str:
    """The human report: totals, then each group of changes with its examples."""
    changed = sum(result.changed.values())
    skipped = sum(result.not_reevaluable.values())
    lines = [
        f"replay of {audit_log} against {candidate}",
        f"candidate version: {result.candidate_version}",
        f"decision records: {result.read} read, {result.replayed} replayed, "
        f"{result.unchanged} unchanged, {changed} changed",
    ]
    if changed:
        lines.append(f"  changed: {_counts(result.changed, CHANGE_KINDS)}")
    if skipped:
        lines.append(f"not re-evaluable: {skipped} ({_counts(result.not_reevaluable)})")
    if result.malformed_count:
        shown = "; ".join(f"line {m.line}: {m.problem}" for m in result.malformed[:MALFORMED_SHOWN])
        more = result.malformed_count - min(len(result.malformed), MALFORMED_SHOWN)
        lines.append(
            f"malformed lines: {result.malformed_count} ({shown}"
            + (f"; and {more} more)" if more else ")")
        )
    if result.other_events:
        lines.append(f"other events skipped: {_counts(result.other_events)}")
    if not changed:
        lines.append("no replayed decision would change")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append("changes (recorded route → candidate route, candidate rule or reason):")
    for group in result.ordered_groups():
        noun = "record" if group.count == 1 else "records"
        lines.append(
            f"  {_KIND_TEXT.get(group.kind, group.kind)}, {group.count} {noun}: "
            f"{group.recorded_route or '(no route)'} → {group.candidate_route or '(no route)'}"
            f", {group.cause}"
        )
        for e in group.examples:
            who = f" principal={e.principal}" if e.principal else ""
            lines.append(f"    {e.time or '-'} {e.decision_id} {e.method} {e.path}{who}")
            lines.append(f"      {e.before.text()} → {e.after.text()}")
            if e.mutations is not None:
                lines.extend(f"      {d}" for d in mutation_diff(*e.mutations))
    return "\n".join(lines) + "\n"


def mutation_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two recorded mutation objects, one line per difference."""
    out: list[str] = []
    for part in sorted(set(before) | set(after)):
        old, new = before.get(part), after.get(part)
        if isinstance(old, dict) or isinstance(new, dict):
            old_map = old if isinstance(old, dict) else {}
            new_map = new if isinstance(new, dict) else {}
            for name in sorted(set(old_map) | set(new_map)):
                if old_map.get(name) != new_map.get(name):
                    was = json.dumps(old_map.get(name), ensure_ascii=False)
                    now = json.dumps(new_map.get(name), ensure_ascii=False)
                    out.append(f"{part} {name}: {was} → {now}")
        else:
            old_set = set(old) if isinstance(old, list) else set()
            new_set = set(new) if isinstance(new, list) else set()
            out.extend(f"{part} +{v}" for v in sorted(new_set - old_set))
            out.extend(f"{part} -{v}" for v in sorted(old_set - new_set))
    return out
