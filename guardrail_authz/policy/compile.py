"""Compile parsed policies in named, timed stages into an immutable PolicySnapshot."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from guardrail_authz.engine.ratelimit import CompiledLimit
from guardrail_authz.identity.jwt import JwtProvider, TokenSource, key_set
from guardrail_authz.policy.compile_mask import compile_mask, reserved_headers
from guardrail_authz.policy.compile_payload import compile_payload
from guardrail_authz.policy.errors import ErrorSink, PolicyLoadError
from guardrail_authz.policy.matchers import (
    ClaimCondition,
    CompiledCondition,
    GlobSet,
    compile_regex,
)
from guardrail_authz.policy.openapi_routes import import_openapi
from guardrail_authz.policy.parse import parse_document
from guardrail_authz.policy.pathtrie import ANY_METHOD, TemplateError, parse_template
from guardrail_authz.policy.snapshot import (
    CompiledPolicy,
    CompiledRoute,
    CompiledRule,
    KeyEntry,
    Mutations,
    PolicySnapshot,
    Rollout,
    RouteIndex,
)
from guardrail_authz.policy.source import (
    ApiKey,
    ApiKeySet,
    ClaimCheck,
    Condition,
    JwtConfig,
    MatchOp,
    ModeSpec,
    Policy,
    Route,
    Rule,
)
from guardrail_authz.policy.yamlsrc import load_documents, read_text

T = TypeVar("T")
POLICY_SUFFIXES = (".yaml", ".yml")
# Credentials whatever the policies say; never recorded in clear.
ALWAYS_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")
TEST_KIND = "GuardrailTest"  # policy test documents, kept next to the policies they test


class _Stages:
    """Times each compile stage so a slow load says where the time went."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start


def policy_files(directory: Path) -> list[Path]:
    """Visible *.yaml/*.yml files of a directory (ConfigMap '..data' entries are hidden)."""
    return sorted(
        p
        for p in directory.iterdir()
        if not p.name.startswith(".") and p.suffix in POLICY_SUFFIXES and p.is_file()
    )


def key_files(paths: Sequence[Path]) -> list[Path]:
    """The files of `--keys` paths: a file as given, or a directory's policy files."""
    out: list[Path] = []
    for path in paths:
        out.extend(policy_files(path) if path.is_dir() else [path])
    return out


def is_openapi(doc: Any) -> bool:
    """An OpenAPI document (top-level `openapi`, no `apiVersion`), not a policy."""
    return isinstance(doc, dict) and "openapi" in doc and "apiVersion" not in doc


def is_test_document(doc: Any) -> bool:
    """A GuardrailTest document (read by `guardrail-authz test`), not a policy."""
    return isinstance(doc, dict) and doc.get("kind") == TEST_KIND


def _not_policy(doc: Any) -> bool:
    return is_openapi(doc) or is_test_document(doc)


def load_directory(
    directory: Path, keys: Sequence[Path] = (), *, confined: bool = False
) -> PolicySnapshot:
    """Load, validate and compile every policy file of a directory, plus the ApiKeySet files
    of `keys` (kept apart from policies, e.g. a Secret), or raise PolicyLoadError.

    `confined` (bundles): files a policy references (JWKS, OpenAPI) must lie in the
    directory; absolute and '..' references are refused before anything is read."""
    sink = ErrorSink()
    stages = _Stages()
    if not directory.is_dir():
        sink.add("dir.missing", "policy directory does not exist", str(directory))
        raise PolicyLoadError(sink.sorted())
    docs: list[Policy | ApiKeySet] = []
    tests: set[str] = set()  # GuardrailTest files: not part of the snapshot
    digest = hashlib.sha256()
    with stages.stage("parse"):
        files = policy_files(directory)
        sources = [(path, path.name, False) for path in files]
        present = [key for key in keys if key.exists()]
        for key in keys:
            if key not in present:
                sink.add("keys.missing", "API key path does not exist", str(key))
        sources += [(path, str(path), True) for path in key_files(present)]
        for path, name, keys_only in sources:
            text = read_text(path, name, sink)
            if text is None:
                continue
            scratch = ErrorSink()
            loaded = load_documents(text, name, scratch)
            if loaded and all(is_test_document(doc) for doc, _ in loaded):
                tests.add(name)
                continue  # read by `guardrail-authz test`; not part of the policy version
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
            if loaded and all(_not_policy(doc) for doc, _ in loaded):
                continue  # an OpenAPI document beside the policies: read by its policy
            loaded = [(doc, line) for doc, line in loaded if not is_test_document(doc)]
            for e in scratch.errors:
                sink.add(e.code, e.message, e.file, e.line, e.field)
            for doc, line in loaded:
                parsed = parse_document(doc, name, line, sink)
                if keys_only and isinstance(parsed, Policy):
                    msg = "only ApiKeySet documents may come from --keys"
                    sink.add("keys.kind", msg, name, line, "kind")
                elif parsed is not None:
                    docs.append(parsed)
        watched: list[Path] = []
        if confined:
            docs = [d for d in docs if _inside(d, sink)]
        docs = [_read_jwks_file(d, directory, digest, watched, sink) for d in docs]
        docs = [import_openapi(d, directory, digest, watched, sink) for d in docs]
    policies = [d for d in docs if isinstance(d, Policy)]
    if not policies and not sink:
        sink.add("dir.empty", "no GuardrailPolicy found (*.yaml or *.yml files)", str(directory))
    names = [name for _, name, _ in sources if name not in tests] + [str(p) for p in watched]
    snapshot = compile_policies(docs, digest.hexdigest()[:12], names, sink, stages)
    return replace(snapshot, watched=tuple(watched))


def _inside(doc: Policy | ApiKeySet, sink: ErrorSink) -> bool:
    """False (and an error) when a policy references a file outside its directory."""
    if not isinstance(doc, Policy):
        return True
    refs = []
    if doc.jwt is not None and doc.jwt.jwks_file is not None:
        refs.append((doc.jwt.jwks_file, doc.jwt.keys_where))
    if doc.openapi is not None:
        refs.append((doc.openapi.file, doc.openapi.where))
    ok = True
    for name, w in refs:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            msg = f"{name!r} is outside the bundle: a bundle must hold every file it reads"
            sink.add("bundle.external", msg, w.file, w.line, w.field)
            ok = False
    return ok


def _read_jwks_file(
    doc: Policy | ApiKeySet,
    directory: Path,
    digest: Any,
    watched: list[Path],
    sink: ErrorSink,
) -> Policy | ApiKeySet:
    """A policy whose JWKS is a file gets its keys inline; the file joins the watched ones."""
    if not isinstance(doc, Policy) or doc.jwt is None or doc.jwt.jwks_file is None:
        return doc
    cfg, w, name = doc.jwt, doc.jwt.keys_where, doc.jwt.jwks_file
    path = directory / name  # an absolute path stays absolute
    text = read_text(path, str(path), sink) if path.is_file() else None
    if text is None:
        sink.add("jwt.jwks", f"JWKS file {str(path)!r} cannot be read", w.file, w.line, w.field)
        return doc  # already reported; compiling it finds no key source
    digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    watched.append(path)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        sink.add(
            "jwt.jwks", f"{path}: not a JWKS (JSON with a 'keys' list)", w.file, w.line, w.field
        )
        return doc  # already reported; compiling it finds no key source
    return replace(doc, jwt=replace(cfg, inline_keys=tuple(keys)))


def compile_policies(
    docs: list[Policy | ApiKeySet],
    content_hash: str,
    files: list[str],
    sink: ErrorSink,
    stages: _Stages | None = None,
) -> PolicySnapshot:
    """Resolve references, normalise matchers and build the route index."""
    stages = stages or _Stages()
    policies = [d for d in docs if isinstance(d, Policy)]
    with stages.stage("resolve"):
        key_sets = _unique(
            [d for d in docs if isinstance(d, ApiKeySet)], lambda s: s.name, "ApiKeySet", sink
        )
        _unique(policies, lambda p: p.name, "GuardrailPolicy", sink)
        keys = {p.name: _resolve_keys(p, key_sets, sink) for p in policies}
    with stages.stage("normalise"):
        routes = [
            (policy, route, _compile_route(policy, route, keys[policy.name], sink))
            for policy in policies
            for route in policy.routes
        ]
        for policy in policies:
            _unique(list(policy.routes), lambda r: r.name, "route", sink)
    with stages.stage("index"):
        index = RouteIndex()
        for policy, route, compiled in routes:
            _index_route(index, policy, route, compiled, sink)
    if sink:
        raise PolicyLoadError(sink.sorted(), sink.dropped)
    names = tuple(sorted((p.name, p.version) for p in policies))
    version = ",".join(f"{n}@{v}" for n, v in names) + "#" + content_hash
    providers = tuple(p.jwt for p in keys.values() if p.jwt is not None)
    plans = tuple(keys[name] for name, _ in names)
    key_headers = frozenset(h for p in plans for h in p.key_headers)
    secret = set(ALWAYS_SECRET_HEADERS) | key_headers
    secret.update(h for p in providers for h in p.credential_headers)
    # Headers a mask section masks: the audit trail never records their clear values.
    secret.update(h.name for _, _, c in routes if c.mask is not None for h in c.mask.headers)
    return PolicySnapshot(
        version,
        content_hash,
        names,
        index,
        len(routes),
        tuple(files),
        dict(stages.seconds),
        providers,
        compiled_policies=plans,
        api_key_headers=key_headers,
        secret_headers=frozenset(secret),
    )


def _unique(
    items: list[T],
    key: Callable[[T], str],
    kind: str,
    sink: ErrorSink,
    code: str = "ref.duplicate",
) -> dict[str, T]:
    """Items by name; every later item reusing a name is an error pointing at the first."""
    seen: dict[str, T] = {}
    for item in items:
        name = key(item)
        if name in seen:
            w = getattr(item, "where")  # noqa: B009 - every source model has .where
            first = getattr(seen[name], "where")  # noqa: B009
            msg = f"{kind} {name!r} already defined at {first.file}:{first.line}"
            sink.add(code, msg, w.file, w.line, w.field or "metadata.name")
        else:
            seen[name] = item
    return seen


def _resolve_keys(policy: Policy, sets: dict[str, ApiKeySet], sink: ErrorSink) -> CompiledPolicy:
    entries: dict[str, KeyEntry] = {}
    all_keys: list[ApiKey] = list(policy.api_keys.keys)
    for name, where in policy.api_keys.sets:
        found = sets.get(name)
        if found is None:
            known = ", ".join(sorted(sets)) or "none"
            msg = f"unknown ApiKeySet {name!r} (known: {known})"
            sink.add("ref.unknown", msg, where.file, where.line, where.field)
        else:
            all_keys.extend(found.keys)
    for key in all_keys:
        entry = KeyEntry(key.principal, frozenset(key.roles), key.expires, key.revoked)
        if entries.get(key.sha256, entry) != entry:
            msg = "the same key hash with another principal, role set, expiry or revocation"
            sink.add("apikey.conflict", msg, key.where.file, key.where.line, key.where.field)
        entries[key.sha256] = entry
    cfg = policy.api_keys
    return CompiledPolicy(
        policy.name,
        policy.version,
        policy.fail_mode == "open",
        cfg.headers,
        cfg.strip,
        entries,
        jwt=_compile_jwt(policy.jwt, sink) if policy.jwt else None,
        xfcc_trusted=GlobSet.build(policy.xfcc_trusted) if policy.xfcc_trusted else None,
    )


def _compile_jwt(cfg: JwtConfig, sink: ErrorSink) -> JwtProvider:
    keys = None
    if cfg.inline_keys is not None:
        try:
            keys = key_set({"keys": list(cfg.inline_keys)})
        except ValueError as exc:
            w = cfg.keys_where
            sink.add("jwt.jwks", str(exc), w.file, w.line, w.field)
            keys = {}
    sources = tuple(TokenSource(s.header, s.prefix, s.cookie) for s in cfg.sources)
    return JwtProvider(
        cfg.issuer,
        cfg.audiences,
        cfg.algorithms,
        cfg.leeway,
        sources,
        cfg.principal_claim,
        cfg.roles_claim,
        cfg.strip,
        keys,
        cfg.jwks_uri,
        cfg.discovery,
        cfg.refresh,
    )


def _compile_route(
    policy: Policy, route: Route, compiled: CompiledPolicy, sink: ErrorSink
) -> CompiledRoute:
    _unique(list(route.rules), lambda r: r.name, "rule", sink, "rule.duplicate")
    route_mode = (
        _rollout(policy.name, route.mode, "route")
        if route.mode is not None
        else _rollout(policy.name, policy.mode, "policy")
    )
    rules = [
        _compile_rule(
            rule,
            sink,
            _rollout(policy.name, rule.mode, "rule") if rule.mode is not None else route_mode,
        )
        for rule in route.rules
    ]
    allow_rules = tuple(r for r in rules if r.allow)
    oa = route.on_allow
    mutations = Mutations(
        tuple((h.name, h.value, h.mode) for h in oa.set_headers),
        oa.remove_headers,
        tuple((h.name, h.value, h.mode) for h in oa.response_headers),
        oa.query_set,
        oa.query_remove,
        oa.propagate_identity,
        tuple((tuple(claim.split(".")), header) for claim, header in oa.claim_headers),
    )
    _check_guardrail_headers(route, sink)
    return CompiledRoute(
        f"{policy.name}/{route.name}",
        route.name,
        route.action,
        compiled,
        tuple(r for r in rules if not r.allow),
        allow_rules,
        bool(allow_rules)
        and all(r.when.needs_identity() for r in route.rules if r.effect == "allow"),
        any(r.when.needs_identity() or r.when.authenticated is not None for r in route.rules)
        or any(limit.key in ("principal", "apiKey") for limit in route.rate_limits),
        mutations,
        _compile_limits(route, sink),
        compile_payload(policy, route, sink),
        route_mode,
        compile_mask(route.mask, policy.name, sink, reserved_headers(compiled, route.on_allow)),
    )


def _rollout(salt: str, mode: ModeSpec | None, scope: str) -> Rollout | None:
    """The compiled monitor setting; None when enforced (mode enforce, or 100%)."""
    if mode is None or not mode.monitor or mode.enforce_percent >= 100:
        return None
    return Rollout(mode.enforce_percent, salt, scope)


def _compile_limits(route: Route, sink: ErrorSink) -> tuple[CompiledLimit, ...]:
    limits = list(route.rate_limits)
    _unique(limits, lambda lim: lim.name, "rate limit", sink, "ratelimit.duplicate")
    return tuple(
        CompiledLimit(
            lim.name, lim.key, lim.header, lim.requests, lim.period, lim.burst, lim.expose
        )
        for lim in limits
    )


_GUARDRAIL_PREFIX = "x-guardrail-"
_DECISION_ID = "x-guardrail-decision-id"
_IDENTITY = frozenset({"x-guardrail-principal", "x-guardrail-roles"})


def _check_guardrail_headers(route: Route, sink: ErrorSink) -> None:
    """x-guardrail-* request headers: never ours to clash with, and never left to a client."""
    oa = route.on_allow
    for h in oa.set_headers:
        if not h.name.startswith(_GUARDRAIL_PREFIX):
            continue
        w = h.where
        if h.name == _DECISION_ID:
            msg = f"{h.name} is always set by guardrail-authz"
        elif oa.propagate_identity and h.name in _IDENTITY:
            msg = f"{h.name} is set by identity propagation; disable propagateIdentity to set it"
        elif h.mode != "overwrite":
            msg = f"{h.name}: x-guardrail-* headers take mode overwrite (a client could spoof them)"
        else:
            continue
        sink.add("route.header", msg, w.file, w.line, w.field)


def _compile_rule(rule: Rule, sink: ErrorSink, monitor: Rollout | None = None) -> CompiledRule:
    w = rule.when
    return CompiledRule(
        rule.name,
        rule.effect == "allow",
        GlobSet.build(w.principals),
        GlobSet.build(w.source_principals),
        frozenset(w.roles),
        w.authenticated,
        tuple(_compile_condition(c, sink) for c in w.headers),
        tuple(_compile_condition(c, sink) for c in w.query),
        tuple(_compile_claim(c, sink) for c in w.claims),
        rule.status or 403,
        rule.reason or f"denied_by_rule:{rule.name}",
        rule.message,
        GlobSet.build(w.actions) if w.actions else None,
        monitor if rule.effect == "deny" else None,
    )


def _compile_condition(cond: Condition, sink: ErrorSink) -> CompiledCondition:
    regex = None
    if cond.op is MatchOp.REGEX:
        compiled = compile_regex(cond.value)
        if isinstance(compiled, str):
            w = cond.where
            sink.add("condition.regex", compiled, w.file, w.line, w.field)
        else:
            regex = compiled
    return CompiledCondition(cond.name, cond.op, cond.value, regex)


def _compile_claim(check: ClaimCheck, sink: ErrorSink) -> ClaimCondition:
    regex = None
    if check.op == "regex":
        compiled = compile_regex(str(check.value))
        if isinstance(compiled, str):
            w = check.where
            sink.add("condition.regex", compiled, w.file, w.line, w.field + ".regex")
        else:
            regex = compiled
    number = check.value if isinstance(check.value, float) else 0.0
    text = check.value if isinstance(check.value, str) else ""
    return ClaimCondition(tuple(check.name.split(".")), check.op, text, number, regex)


def _index_route(
    index: RouteIndex, policy: Policy, route: Route, compiled: CompiledRoute, sink: ErrorSink
) -> None:
    m = route.match
    hosts = m.hosts if m.hosts is not None else policy.hosts
    ports = m.ports if m.ports is not None else policy.ports
    templates: list[tuple[str, ...]] = []
    for path in m.paths:
        try:
            templates.append(parse_template(path))
        except TemplateError as exc:
            sink.add("match.path", str(exc), m.where.file, m.where.line, m.where.field + ".paths")
    for prefix in m.prefixes:
        try:
            templates.append((*parse_template(prefix), "**"))
        except TemplateError as exc:
            w = m.where
            sink.add("match.path", str(exc), w.file, w.line, w.field + ".prefixes")
    for host in hosts:
        for port in ports or (0,):
            trie = index.trie(host, port)
            for segments in templates:
                for method in m.methods or (ANY_METHOD,):
                    other = trie.insert(segments, method, compiled)
                    if other is not None and other is not compiled:
                        where = f"{host}:{port or '*'} {method} /{'/'.join(segments)}"
                        msg = f"route {compiled.id!r} overlaps route {other.id!r} on {where}"
                        w = route.where
                        sink.add("route.conflict", msg, w.file, w.line, w.field)
