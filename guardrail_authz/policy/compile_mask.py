"""Compile a route's `mask:` section into a MaskPlan: paths parsed, regexes and detectors built."""

from __future__ import annotations

from collections.abc import Mapping

from guardrail_authz.payload.mask import Exemption, HeaderMaskRule, MaskPlan, MaskRule, Style
from guardrail_authz.payload.mask_detect import Detector, Scanner, builtin, custom
from guardrail_authz.payload.mask_path import PathError, parse_path, prepare
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.matchers import GlobSet, compile_regex
from guardrail_authz.policy.snapshot import CompiledPolicy
from guardrail_authz.policy.source import OnAllow
from guardrail_authz.policy.source_mask import ExemptSpec, HeaderMaskSpec, MaskSpec


def compile_mask(
    spec: MaskSpec | None,
    policy_name: str,
    sink: ErrorSink,
    reserved: Mapping[str, str] | None = None,
) -> MaskPlan | None:
    """The route's plan, or None without a mask section; a path or regex that does not
    compile is reported (mask.path, mask.regex) and left out, and so is a header rule for a
    name in `reserved` (name -> what already handles it, see reserved_headers; mask.header)."""
    if spec is None:
        return None
    fields: list[MaskRule] = []
    for f in spec.fields:
        w = f.where
        try:
            path = parse_path(f.path)
        except PathError as exc:
            sink.add("mask.path", f"{f.path!r}: {exc}", w.file, w.line, w.field)
            continue
        fields.append(
            MaskRule(f"field:{f.path}", Style(f.style, f.keep), _exemption(f.exempt), path)
        )
    detectors: list[Detector] = []
    rules: list[MaskRule] = []
    for d in spec.detectors:
        w = d.where
        if d.regex is None:
            detector = builtin(d.detector)
        else:
            pattern = compile_regex(d.regex)
            if isinstance(pattern, str):
                sink.add("mask.regex", pattern, w.file, w.line, w.field)
                continue
            if pattern.fullmatch("") is not None:
                msg = f"regex {d.regex!r} matches the empty string: use + rather than * or ?"
                sink.add("mask.regex", msg, w.file, w.line, w.field)
                continue
            detector = custom(d.detector, pattern)
        detectors.append(detector)
        rules.append(
            MaskRule(f"detector:{d.detector}", Style(d.style, d.keep), _exemption(d.exempt))
        )
    if fields or rules:
        prepare()
    return MaskPlan(
        response=spec.response,
        request=spec.request,
        fields=tuple(fields),
        detectors=tuple(rules),
        scanner=Scanner(detectors) if detectors else None,
        exemption=_exemption(spec.exempt),
        decompress=spec.compressed == "decompress",
        max_bytes=spec.max_bytes,
        policy=policy_name,
        headers=_header_rules(spec.headers, reserved or {}, sink),
    )


def reserved_headers(policy: CompiledPolicy, on_allow: OnAllow) -> dict[str, str]:
    """Request headers a route's mask may not name, with what handles them already: the
    policy's credential headers and the headers the route's onAllow sets or removes."""
    out: dict[str, str] = {}
    for name in policy.key_headers:
        out[name] = "the policy's API-key header (apiKeys.stripFromUpstream keeps it upstream)"
    if policy.jwt is not None:
        for name in policy.jwt.credential_headers:
            out[name] = "a header the policy reads its JWT from (jwt.stripFromUpstream removes it)"
    for name in on_allow.remove_headers:
        out[name] = "removed by the route's onAllow.requestHeaders.remove"
    for h in on_allow.set_headers:
        out[h.name] = "set by the route's onAllow.requestHeaders.set"
    for _, name in on_allow.claim_headers:
        out[name] = "set by the route's onAllow.claimHeaders"
    return out


def _header_rules(
    specs: tuple[HeaderMaskSpec, ...], reserved: Mapping[str, str], sink: ErrorSink
) -> tuple[HeaderMaskRule, ...]:
    rules: list[HeaderMaskRule] = []
    for h in specs:
        taken = reserved.get(h.name)
        if taken is not None:
            w, msg = h.where, f"{h.name!r} is {taken}: it cannot be masked too"
            sink.add("mask.header", msg, w.file, w.line, w.field)
            continue
        style = None if h.style == "remove" else Style(h.style, h.keep)
        rules.append(HeaderMaskRule(h.name, style, _exemption(h.exempt)))
    return tuple(rules)


def _exemption(spec: ExemptSpec | None) -> Exemption | None:
    if spec is None:
        return None
    return Exemption(GlobSet.build(spec.principals), frozenset(spec.roles))
