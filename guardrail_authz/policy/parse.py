"""Parse YAML documents into the frozen source model, reporting every mistake found."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from guardrail_authz.engine.ratelimit import KEY_KINDS
from guardrail_authz.identity.jwt import ALGORITHMS, DEFAULT_ALGORITHMS
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.matchers import CLAIM_OPS
from guardrail_authz.policy.names import API_VERSION
from guardrail_authz.policy.names import HEADER_NAME as _HEADER
from guardrail_authz.policy.names import NAME as _NAME
from guardrail_authz.policy.parse_mask import mask_spec
from guardrail_authz.policy.parse_payload import actions_spec, body_spec, inspect_spec, schema_spec
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.source import (
    ApiKey,
    ApiKeyConfig,
    ApiKeySet,
    ClaimCheck,
    Condition,
    HeaderSet,
    JwtConfig,
    Match,
    MatchOp,
    ModeSpec,
    OnAllow,
    OpenApiSpec,
    Policy,
    RateLimit,
    Route,
    Rule,
    TokenFrom,
    When,
    Where,
)

KINDS = ("GuardrailPolicy", "ApiKeySet")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
_REASON = re.compile(r"^[a-z0-9_.:-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LIMIT_KEYS = tuple(k for k in KEY_KINDS if k not in ("header", "claim"))  # no ':<name>'
_HEADER_MODES = {"overwrite": "overwrite", "append": "append", "ifAbsent": "if_absent"}


def parse_document(doc: Any, file: str, line: int, sink: ErrorSink) -> Policy | ApiKeySet | None:
    """Parse one YAML document into a Policy or an ApiKeySet (None when unusable)."""
    r = Reader(doc, "", file, sink, line)
    if not r.ok:
        return None
    r.only("apiVersion", "kind", "metadata", "spec")
    check_api_version(r)
    kind = r.text("kind", required=True)
    if kind is not None and kind not in KINDS:
        r.error("kind", "doc.kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        return None
    meta = r.mapping("metadata", required=True)
    name, version = "", "0"
    if meta is not None:
        meta.only("name", "version", "labels", "annotations", "description")
        name = document_name(meta)
        version = meta.scalar_text("version") or "0"
    spec = r.mapping("spec", required=True)
    if spec is None or kind is None:
        return None
    if kind == "ApiKeySet":
        spec.only("keys")
        return ApiKeySet(name, _keys(spec), r.where())
    return _policy(spec, name, version, r)


def check_api_version(r: Reader) -> None:
    """A document's `apiVersion`: required, and ours."""
    api = r.text("apiVersion", required=True)
    if api is not None and api != API_VERSION:
        r.error(
            "apiVersion", "doc.api_version", f"unsupported apiVersion {api!r}; use {API_VERSION}"
        )


def document_name(meta: Reader) -> str:
    """A document's `metadata.name`: required, lower-case letters, digits and -._ ("" when
    missing or invalid, reported)."""
    name = meta.text("name", required=True) or ""
    if name and not _NAME.match(name):
        meta.error("name", "doc.name", f"{name!r} is not a valid name (lowercase, digits, -._)")
    return name


def _policy(spec: Reader, name: str, version: str, doc: Reader) -> Policy:
    spec.only(
        "hosts", "ports", "failMode", "apiKeys", "jwt", "mtls", "routes", "inspect", "openapi",
        "mode", "enforce",
    )  # fmt: skip
    hosts = _hosts(spec, "hosts") or ("*",)
    ports = _ports(spec, "ports")
    fail_mode = spec.choice("failMode", ("closed", "open"), "closed")
    keys = spec.mapping("apiKeys")
    api_keys = _api_keys(keys) if keys else ApiKeyConfig(("x-api-key",), True, (), ())
    openapi = spec.mapping("openapi")
    routes = tuple(
        _route(spec.sub(item, p, ln))
        for item, p, ln in spec.items("routes", required=openapi is None)
    )
    j = spec.mapping("jwt")
    jwt = _jwt(j) if j else None
    trusted: tuple[str, ...] = ()
    mtls = spec.mapping("mtls")
    if mtls is not None:
        mtls.only("forwardedClientCert")
        fcc = mtls.mapping("forwardedClientCert")
        if fcc is not None:
            fcc.only("trustedProxies")
            trusted = fcc.text_list("trustedProxies")
            if not trusted:
                fcc.error(None, "mtls.trusted", "name at least one trusted proxy identity")
    inspect = spec.mapping("inspect")
    return Policy(
        name, version, hosts, ports or (), fail_mode, api_keys, routes, doc.where(), jwt,
        trusted, inspect_spec(inspect) if inspect else None, _openapi(openapi) if openapi else None,
        mode_spec(spec),
    )  # fmt: skip


def _openapi(r: Reader) -> OpenApiSpec:
    r.only("file", "strict", "rules", "body")
    file = r.text("file", required=True) or ""
    rules = tuple(_rule(r.sub(item, p, ln)) for item, p, ln in r.items("rules", required=True))
    body = r.mapping("body")
    strict = bool(r.flag("strict", default=False))
    return OpenApiSpec(file, strict, rules, body_spec(body) if body else None, r.where("file"))


_BEARER = (TokenFrom("authorization", "Bearer ", None),)


def _jwt(r: Reader) -> JwtConfig:
    r.only(
        "issuer", "audiences", "algorithms", "leeway", "jwks", "from", "principalClaim",
        "rolesClaim", "stripFromUpstream",
    )  # fmt: skip
    issuer = r.text("issuer", required=True) or ""
    audiences = r.text_list("audiences")
    if not audiences and "audiences" not in r.data:
        r.error(None, "field.required", "missing required field 'audiences' (at least one)")
    algorithms = r.text_list("algorithms") or DEFAULT_ALGORITHMS
    for alg in algorithms:
        if alg not in ALGORITHMS:
            r.error(
                "algorithms",
                "jwt.algorithm",
                f"{alg!r} is not accepted; use asymmetric ones: {', '.join(ALGORITHMS)} "
                "(none and HS* never are)",
            )
    leeway = _duration(r, "leeway", "jwt.leeway", 0.0, 300.0, default=0.0)
    jwks_uri, discovery, inline, refresh, keys_where = None, False, None, 300.0, r.where("jwks")
    jwks_file: str | None = None
    j = r.mapping("jwks", required=True)
    if j is not None:
        j.only("uri", "discovery", "keys", "file", "refresh")
        jwks_uri = j.text("uri")
        discovery = bool(j.flag("discovery"))
        listed = j.items("keys")
        inline = tuple(item for item, _, _ in listed) if "keys" in j.data else None
        jwks_file = j.text("file")
        options = (
            ("uri", jwks_uri),
            ("discovery", discovery),
            ("keys", inline),
            ("file", jwks_file),
        )
        if len([k for k, v in options if v]) != 1:
            j.error(
                None, "jwt.jwks", "give exactly one of 'uri', 'discovery: true', 'keys', 'file'"
            )
        if jwks_uri is not None and not jwks_uri.startswith(("http://", "https://")):
            j.error("uri", "jwt.jwks", f"{jwks_uri!r} must be an http or https URL")
        if discovery and not issuer.startswith(("http://", "https://")):
            j.error("discovery", "jwt.jwks", "discovery needs an http or https issuer URL")
        refresh = _duration(j, "refresh", "jwt.refresh", 10.0, 86_400.0, default=300.0)
        keys_where = j.where("file" if jwks_file else "keys")
    sources = tuple(_token_from(r.sub(item, p, ln)) for item, p, ln in r.items("from")) or _BEARER
    roles_claim = r.text("rolesClaim")
    strip = bool(r.flag("stripFromUpstream", default=True))
    return JwtConfig(
        issuer, audiences, algorithms, leeway, jwks_uri, discovery, inline, refresh, sources,
        r.text("principalClaim") or "sub", roles_claim, strip, r.where(), keys_where, jwks_file,
    )  # fmt: skip


def _token_from(r: Reader) -> TokenFrom:
    r.only("header", "prefix", "cookie")
    header = r.text("header")
    cookie = r.text("cookie")
    if (header is None) == (cookie is None):
        r.error(None, "jwt.from", "give exactly one of 'header' or 'cookie'")
    if header is not None:
        header = header.lower()
        if not _HEADER.match(header):
            r.error("header", "field.header", f"{header!r} is not a valid header name")
    prefix = r.text("prefix") or ""
    if prefix and header is None:
        r.error("prefix", "jwt.from", "a prefix applies to a header only")
    return TokenFrom(header, prefix, cookie)


def _hosts(r: Reader, key: str) -> tuple[str, ...]:
    hosts = r.text_list(key, lower=True)
    if key in r.data and isinstance(r.data[key], list) and not r.data[key]:
        r.error(key, "field.empty", "must not be empty (omit it to match every host)")
    for h in hosts:
        body = h[2:] if h.startswith("*.") else h
        if h != "*" and ("*" in body or "/" in body or not body):
            r.error(key, "match.host", f"host {h!r}: use an exact name, '*.suffix' or '*'")
        elif ":" in body and not (body.startswith("[") and body.endswith("]")):
            r.error(key, "match.host", f"host {h!r}: no port here, ports go in 'ports'")
    return hosts


def _ports(r: Reader, key: str) -> tuple[int, ...] | None:
    if key not in r.data:
        return None
    ports: list[int] = []
    if isinstance(r.data[key], list) and not r.data[key]:
        r.error(key, "field.empty", "must not be empty (omit it to match every port)")
    for item, path, line in r.items(key):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item < 65536:
            r.sink.add("match.port", f"port must be 1-65535, got {item!r}", r.file, line, path)
        else:
            ports.append(item)
    return tuple(ports)


def _api_keys(r: Reader) -> ApiKeyConfig:
    r.only("headers", "stripFromUpstream", "keys", "keySets")
    headers = r.text_list("headers", lower=True) or ("x-api-key",)
    for h in headers:
        if not _HEADER.match(h):
            r.error("headers", "field.header", f"{h!r} is not a valid header name")
    strip = r.flag("stripFromUpstream", default=True)
    sets: list[tuple[str, Where]] = []
    for item, path, line in r.items("keySets"):
        if isinstance(item, str):
            sets.append((item, Where(r.file, line, path)))
        else:
            r.sink.add("field.type", "must be the name of an ApiKeySet", r.file, line, path)
    return ApiKeyConfig(headers, bool(strip), _keys(r), tuple(sets))


def _keys(r: Reader) -> tuple[ApiKey, ...]:
    out: list[ApiKey] = []
    for item, path, line in r.items("keys"):
        k = r.sub(item, path, line)
        if not k.ok:
            continue
        k.only("sha256", "principal", "roles", "description", "expires", "revoked")
        digest = (k.text("sha256", required=True) or "").lower()
        if digest and not _SHA256.match(digest):
            k.error("sha256", "apikey.hash", "must be 64 hex characters (the SHA-256 of the key)")
            digest = ""
        principal = k.text("principal", required=True)
        roles = k.text_list("roles")
        expires = _timestamp(k, "expires")
        revoked = bool(k.flag("revoked"))
        if digest and principal:
            out.append(ApiKey(digest, principal, roles, k.where(), expires, revoked))
    return tuple(out)


def _timestamp(r: Reader, key: str) -> float | None:
    """An RFC 3339 date-time with a zone (2027-01-31T00:00:00Z) as Unix time, or None."""
    value = r.data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, datetime) or value.tzinfo is None:
        r.error(key, "apikey.expires", "must be a date-time with a zone, e.g. 2027-01-31T00:00:00Z")
        return None
    return value.timestamp()


def _route(r: Reader) -> Route:
    r.only(
        "name", "action", "match", "rules", "onAllow", "rateLimits", "description", "body",
        "schema", "inspect", "actions", "mode", "enforce", "mask",
    )  # fmt: skip
    name = r.text("name", required=True) or ""
    action = r.text("action") or name
    m = r.mapping("match", required=True)
    match = _match(m) if m else Match(None, None, (), (), (), r.where())
    rules = tuple(_rule(r.sub(item, p, ln)) for item, p, ln in r.items("rules", required=True))
    allow = r.mapping("onAllow")
    limits = tuple(_rate_limit(r.sub(item, p, ln)) for item, p, ln in r.items("rateLimits"))
    on_allow = _on_allow(allow) if allow else OnAllow()
    body, schema, inspect, actions = (
        r.mapping(k) for k in ("body", "schema", "inspect", "actions")
    )
    return Route(
        name, action, match, rules, on_allow, r.where(), limits,
        body_spec(body) if body else None, schema_spec(schema) if schema else None,
        inspect_spec(inspect) if inspect else None, actions_spec(actions) if actions else None,
        mode_spec(r), mask_spec(mask) if (mask := r.mapping("mask")) else None,
    )  # fmt: skip


def _rate_limit(r: Reader) -> RateLimit:
    r.only("name", "key", "requests", "per", "burst", "exposeHeaders")
    name = r.text("name", required=True) or ""
    if name and not _NAME.match(name):
        r.error("name", "ratelimit.name", "use lowercase letters, digits, '.', '_' and '-'")
    key = r.text("key", required=True) or "global"
    header: str | None = None
    if key.startswith("header:"):
        header = key.removeprefix("header:").lower()
        if not _HEADER.match(header):
            r.error("key", "ratelimit.key", f"{header!r} is not a valid header name")
        key = "header"
    elif key.startswith("claim:"):
        header = key.removeprefix("claim:")  # the claim's (dotted) name
        if not header:
            r.error("key", "ratelimit.key", "claim: needs a claim name")
        key = "claim"
    elif key not in _LIMIT_KEYS:
        kinds = ", ".join((*_LIMIT_KEYS, "header:<name>", "claim:<name>"))
        r.error("key", "ratelimit.key", f"must be one of {kinds}, got {key!r}")
    requests = r.integer("requests", required=True, lo=1, hi=1_000_000_000) or 1
    period = _duration(r, "per", "ratelimit.period", 0.001, 86_400.0)
    burst = r.integer("burst", lo=1, hi=1_000_000_000) or requests
    return RateLimit(
        name, key, header, requests, period, burst, bool(r.flag("exposeHeaders")), r.where()
    )


def _duration(
    r: Reader, key: str, code: str, lo: float, hi: float, default: float | None = None
) -> float:
    """A duration such as 250ms, 1s, 1.5m or 1h, in seconds, within [lo, hi]; required unless
    a default is given (also returned, or lo, when the value is invalid)."""
    text = r.text(key, required=default is None)
    fallback = lo if default is None else default
    if text is None:
        return fallback
    found = _DURATION.match(text)
    if found is None:
        r.error(key, code, f"{text!r} is not a duration like 500ms, 1s, 10m or 1h")
        return fallback
    seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if not lo <= seconds <= hi:
        r.error(key, code, f"{text!r} must be between {lo:g}s and {hi:g}s")
        return fallback
    return seconds


def _match(r: Reader) -> Match:
    r.only("hosts", "ports", "methods", "paths", "prefixes")
    hosts = _hosts(r, "hosts") if "hosts" in r.data else None
    methods = tuple(m.upper() for m in r.text_list("methods"))
    for m in methods:
        if m not in METHODS:
            r.error("methods", "match.method", f"unknown method {m!r}")
    paths = r.text_list("paths")
    prefixes = r.text_list("prefixes")
    for p in (*paths, *prefixes):
        if not p.startswith("/"):
            r.error("paths" if p in paths else "prefixes", "match.path", f"{p!r} must start with /")
    if not paths and not prefixes:
        r.error(None, "match.path", "give at least one of 'paths' or 'prefixes'")
    return Match(hosts, _ports(r, "ports"), methods, paths, prefixes, r.where())


def _rule(r: Reader) -> Rule:
    r.only("name", "effect", "when", "status", "reason", "message", "mode", "enforce")
    name = r.text("name", required=True) or ""
    effect = r.choice("effect", ("allow", "deny"), "deny")
    if "effect" not in r.data and r.ok:
        r.error(None, "field.required", "missing required field 'effect' (allow or deny)")
    w = r.mapping("when")
    when = _when(w) if w else When()
    status = r.integer("status", lo=400, hi=599)
    reason = r.text("reason")
    if reason is not None and not _REASON.match(reason):
        r.error(
            "reason", "rule.reason", "use lowercase letters, digits and _ . : - (a header value)"
        )
        reason = None
    message = r.text("message")
    mode = mode_spec(r)
    given = {"status": status, "reason": reason, "message": message}
    if mode is not None:
        given["mode" if "mode" in r.data else "enforce"] = "monitor"
    for key, value in given.items():
        if value is not None and effect == "allow":
            hint = (
                " (an allow rule grants access: put its route in monitor mode instead)"
                if key in ("mode", "enforce")
                else ""
            )
            r.error(key, "rule.deny_only", f"{key} applies to deny rules only{hint}")
    return Rule(name, effect, when, status, reason, message, r.where(), mode)


_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")


def mode_spec(r: Reader) -> ModeSpec | None:
    """`mode: enforce | monitor` and `enforce: N%` (the share of callers, by principal,
    already enforced while in monitor mode); None when neither is given (inherited)."""
    if "mode" not in r.data and "enforce" not in r.data:
        return None
    mode = r.choice("mode", ("enforce", "monitor"), "monitor")
    percent: float | None = None
    if "enforce" in r.data:
        raw = r.data["enforce"]
        found = _PERCENT.match(raw) if isinstance(raw, str) else None
        if found is not None:
            percent = float(found.group(1))
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            percent = float(raw)
        if percent is None or not 0 <= percent <= 100:
            r.error("enforce", "mode.enforce", f"must be a percentage from 0% to 100%, got {raw!r}")
            percent = None
    if mode == "enforce":
        if percent is not None and percent < 100:
            msg = "enforce: N% is a monitor-mode rollout; use mode: monitor (or leave mode out)"
            r.error("enforce", "mode.enforce", msg)
        return ModeSpec(False, 100.0, r.where("mode"))
    where = r.where("mode" if "mode" in r.data else "enforce")
    return ModeSpec(True, percent or 0.0, where)


def _when(r: Reader) -> When:
    r.only(
        "principals", "sourcePrincipals", "roles", "authenticated", "headers", "query", "claims",
        "actions",
    )  # fmt: skip
    return When(
        principals=r.text_list("principals"),
        source_principals=r.text_list("sourcePrincipals"),
        roles=r.text_list("roles"),
        authenticated=r.flag("authenticated"),
        headers=_conditions(r, "headers", header=True),
        query=_conditions(r, "query", header=False),
        claims=tuple(_claim(r.sub(item, p, ln)) for item, p, ln in r.items("claims")),
        actions=r.text_list("actions"),
    )


def _claim(r: Reader) -> ClaimCheck:
    r.only("name", *CLAIM_OPS)
    name = r.text("name", required=True) or ""
    ops = [op for op in CLAIM_OPS if op in r.data]
    if len(ops) != 1:
        r.error(None, "claim.op", f"give exactly one of {', '.join(CLAIM_OPS)}")
        return ClaimCheck(name, "present", "", r.where())
    op = ops[0]
    value: str | float = ""
    if op in ("gt", "gte", "lt", "lte"):
        raw = r.data.get(op)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            r.error(op, "claim.number", f"{op} compares numbers; got {raw!r}")
        else:
            value = float(raw)
    elif op == "present":
        if r.data.get(op) is not True:
            r.error(op, "claim.op", "present takes true (write a deny rule for absence)")
    else:
        value = r.scalar_text(op, required=True) or ""
    return ClaimCheck(name, op, value, r.where())


def _conditions(r: Reader, key: str, *, header: bool) -> tuple[Condition, ...]:
    out: list[Condition] = []
    for item, path, line in r.items(key):
        c = r.sub(item, path, line)
        if not c.ok:
            continue
        ops = [op for op in MatchOp if op.value in c.data]
        c.only("name", *(op.value for op in MatchOp))
        name = c.text("name", required=True) or ""
        name = name.lower() if header else name
        if header and name and not _HEADER.match(name):
            c.error("name", "field.header", f"{name!r} is not a valid header name")
        elif header and name.startswith("x-guardrail-"):
            msg = "x-guardrail-* headers are set by the guardrail; a client could spoof them"
            c.error("name", "condition.reserved", msg)
        if len(ops) != 1:
            choices = ", ".join(op.value for op in MatchOp)
            c.error(None, "condition.op", f"give exactly one of {choices}")
            continue
        op = ops[0]
        if op in (MatchOp.PRESENT, MatchOp.ABSENT):
            if c.flag(op.value) is not True:
                c.error(op.value, "condition.op", f"{op.value} only takes the value true")
            value = ""
        else:
            given = c.text(op.value) if op is not MatchOp.EQUALS else c.scalar_text(op.value)
            if given is None:
                continue
            value = given
        out.append(Condition(name, op, value, c.where(op.value)))
    return tuple(out)


def _on_allow(r: Reader) -> OnAllow:
    r.only(
        "requestHeaders", "responseHeaders", "queryParameters", "propagateIdentity", "claimHeaders"
    )
    req = r.mapping("requestHeaders")
    resp = r.mapping("responseHeaders")
    query = r.mapping("queryParameters")
    set_h: tuple[HeaderSet, ...] = ()
    remove_h: tuple[str, ...] = ()
    if req:
        req.only("set", "remove")
        set_h = _header_sets(req, "set")
        remove_h = req.text_list("remove", lower=True)
    resp_h: tuple[HeaderSet, ...] = ()
    if resp:
        resp.only("add")
        resp_h = _header_sets(resp, "add")
    q_set: list[tuple[str, str]] = []
    q_remove: tuple[str, ...] = ()
    if query:
        query.only("set", "remove")
        for item, path, line in query.items("set"):
            q = query.sub(item, path, line)
            q.only("name", "value")
            name, value = q.text("name", required=True), q.scalar_text("value", required=True)
            if name is not None and value is not None:
                q_set.append((name, value))
        q_remove = query.text_list("remove")
    propagate = r.flag("propagateIdentity", default=True)
    claims: list[tuple[str, str]] = []
    for item, path, line in r.items("claimHeaders"):
        c = r.sub(item, path, line)
        c.only("claim", "header")
        claim, header = c.text("claim", required=True), c.text("header", required=True)
        if header is not None and not _HEADER.match(header.lower()):
            c.error("header", "field.header", f"{header!r} is not a valid header name")
        elif claim is not None and header is not None:
            claims.append((claim, header.lower()))
    return OnAllow(set_h, remove_h, resp_h, tuple(q_set), q_remove, bool(propagate), tuple(claims))


def _header_sets(r: Reader, key: str) -> tuple[HeaderSet, ...]:
    out: list[HeaderSet] = []
    for item, path, line in r.items(key):
        h = r.sub(item, path, line)
        if not h.ok:
            continue
        h.only("name", "value", "mode")
        name = (h.text("name", required=True) or "").lower()
        value = h.scalar_text("value", required=True)
        mode = h.choice("mode", tuple(_HEADER_MODES), "overwrite")
        if name and not _HEADER.match(name):
            h.error("name", "field.header", f"{name!r} is not a valid header name")
        elif name and value is not None:
            out.append(HeaderSet(name, value, _HEADER_MODES[mode], h.where()))
    return tuple(out)
