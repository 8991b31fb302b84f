"""Compile a route's `mask:` section into a MaskPlan: paths parsed, regexes and detectors built."""

from __future__ import annotations

from guardrail_authz.payload.mask import Exemption, MaskPlan, MaskRule, Style
from guardrail_authz.payload.mask_detect import Detector, Scanner, builtin, custom
from guardrail_authz.payload.mask_path import PathError, parse_path
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.matchers import GlobSet, compile_regex
from guardrail_authz.policy.source_mask import ExemptSpec, MaskSpec


def compile_mask(spec: MaskSpec | None, policy_name: str, sink: ErrorSink) -> MaskPlan | None:
    """The route's plan, or None without a mask section; a path or regex that does not
    compile is reported (mask.path, mask.regex) and left out."""
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
    )


def _exemption(spec: ExemptSpec | None) -> Exemption | None:
    if spec is None:
        return None
    return Exemption(GlobSet.build(spec.principals), frozenset(spec.roles))
