"""JWT identity: real keys, real signed tokens, a real JWKS served over loopback HTTP."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from guardrail_authz.engine.decision import Decision
from guardrail_authz.engine.evaluate import evaluate
from guardrail_authz.engine.ratelimit import LocalLimiter
from guardrail_authz.engine.request import RequestView
from guardrail_authz.engine.runtime import Runtime
from guardrail_authz.identity import jwt as jwt_module
from guardrail_authz.identity.jwks import JwksCache
from guardrail_authz.identity.jwt import TokenError, Verifier
from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder
from tests.jwtkit import AUDIENCE, Idp, SigningKey, make_key, serve_idp

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: p}
spec:
  jwt:
    issuer: ISSUER
    audiences: [AUDIENCE]
JWKS
    rolesClaim: roles
    leeway: 5s
    from:
      - {header: authorization, prefix: "Bearer "}
      - {cookie: session}
  routes:
    - name: profile
      match: {paths: [/profile]}
      rules:
        - {name: staff, effect: allow, when: {roles: [staff]}}
        - {name: users, effect: allow, when: {authenticated: true}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {alg: make_key(alg, f"{alg.lower()}-1") for alg in ("RS256", "ES256", "EdDSA")}


@pytest.fixture
def idp(keys: dict[str, SigningKey]) -> Iterator[Idp]:
    with serve_idp(list(keys.values())) as served:
        yield served


def _snapshot(tmp_path: Path, idp: Idp, jwks: str) -> PolicySnapshot:
    text = POLICY.replace("ISSUER", idp.issuer).replace("AUDIENCE", AUDIENCE)
    (tmp_path / "p.yaml").write_text(text.replace("JWKS\n", jwks), encoding="utf-8")
    return load_directory(tmp_path)


class World:
    """A snapshot whose provider fetches the loopback IdP's JWKS, and the server's runtime."""

    def __init__(self, tmp_path: Path, idp: Idp, jwks: str | None = None) -> None:
        self.idp = idp
        self.clock = Clock()
        self.snapshot = _snapshot(tmp_path, idp, jwks or f"    jwks: {{uri: {idp.jwks_uri}}}\n")
        self.cache = JwksCache(clock=self.clock)
        self.cache.track(self.snapshot.jwt_providers)
        self.runtime = Runtime(None, Verifier(self.cache.lookup))

    def refresh(self, after: float = 0.0) -> None:
        self.clock.now += after
        self.cache.refresh_due()

    def check(self, token: str | None = None, **headers: str) -> Decision:
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        view = RequestView(method="GET", raw_path="/profile", host="h", headers=headers)
        return evaluate(self.snapshot, view, "d", self.runtime)


@pytest.fixture
def world(tmp_path: Path, idp: Idp) -> World:
    w = World(tmp_path, idp)
    w.refresh()
    return w


def _refused(d: Decision, reason: str) -> None:
    assert (d.allowed, d.status, d.reason) == (False, 401, reason), d
    headers = dict(d.deny_headers)
    assert headers["www-authenticate"] == 'Bearer realm="guardrail-authz", error="invalid_token"'
    assert "eyJ" not in d.body  # no token content in the answer
    assert "eyJ" not in json.dumps(headers)


# --- accepted tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_verifies_and_names_the_principal(
    world: World, keys: dict[str, SigningKey], alg: str
) -> None:
    d = world.check(keys[alg].sign(world.idp.claims(sub=f"user-{alg}", roles=["staff", "x"])))
    assert (d.allowed, d.principal, d.rule) == (True, f"user-{alg}", "staff")
    sets = {n: v for n, v, _ in d.upstream_headers_set}
    assert sets["x-guardrail-principal"] == f"user-{alg}"
    assert sets["x-guardrail-roles"] == "staff,x"
    assert "authorization" in d.upstream_headers_remove  # the token stays at the guardrail


def test_space_separated_roles_and_the_cookie_source(
    world: World, keys: dict[str, SigningKey]
) -> None:
    token = keys["ES256"].sign(world.idp.claims(roles="viewer staff"))
    d = world.check(cookie=f"theme=dark; session={token}")
    assert (d.allowed, d.rule, d.principal) == (True, "staff", "alice")


def test_verified_tokens_are_remembered(world: World, keys: dict[str, SigningKey]) -> None:
    token = keys["RS256"].sign(world.idp.claims())
    assert world.check(token).allowed
    world.idp.down = True
    world.refresh(after=1000)  # keys kept stale anyway; the token is not even re-verified
    assert world.check(token).allowed


# --- refused tokens -------------------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(world: World) -> None:
    d = world.check()
    assert (d.status, d.reason) == (401, "no_identity")
    assert dict(d.deny_headers)["www-authenticate"] == 'Bearer realm="guardrail-authz"'


def test_expired_and_not_yet_valid(world: World, keys: dict[str, SigningKey]) -> None:
    key, now = keys["ES256"], int(time.time())
    _refused(world.check(key.sign(world.idp.claims(exp=now - 60))), "token_expired")
    assert world.check(key.sign(world.idp.claims(exp=now - 2))).allowed  # within the 5 s leeway
    _refused(world.check(key.sign(world.idp.claims(nbf=now + 60))), "token_not_yet_valid")
    _refused(world.check(key.sign(world.idp.claims(iat=now + 60))), "token_not_yet_valid")


def test_wrong_audience_issuer_or_missing_claims(world: World, keys: dict[str, SigningKey]) -> None:
    key = keys["RS256"]
    _refused(world.check(key.sign(world.idp.claims(aud="someone-else"))), "token_audience")
    _refused(world.check(key.sign(world.idp.claims(iss="http://evil.example"))), "token_issuer")
    claims = world.idp.claims()
    del claims["exp"]
    _refused(world.check(key.sign(claims)), "token_claims")
    claims = world.idp.claims()
    del claims["sub"]
    _refused(world.check(key.sign(claims)), "token_claims")


def test_alg_none_and_hmac_with_the_public_key_are_refused(
    world: World, keys: dict[str, SigningKey]
) -> None:
    claims = world.idp.claims()
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "rs256-1"})
    _refused(world.check(unsigned), "token_algorithm")
    public_pem = (
        keys["RS256"]
        .private.public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    forged = _hs256(claims, public_pem, "rs256-1")  # the classic RS/HS confusion
    _refused(world.check(forged), "token_algorithm")


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token signed with any bytes as the secret (PyJWT refuses PEM secrets)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_tampered_and_malformed_tokens(world: World, keys: dict[str, SigningKey]) -> None:
    token = keys["EdDSA"].sign(world.idp.claims(sub="alice"))
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(world.check(f"{head}.{forged_body}.{sig}"), "token_signature")
    _refused(world.check("not-a-jwt"), "token_malformed")


def test_a_key_of_the_wrong_family_for_the_alg(world: World, keys: dict[str, SigningKey]) -> None:
    ec_key = keys["ES256"]
    wrong = SigningKey("rs256-1", "ES256", ec_key.private, ec_key.jwk)  # ES256 naming an RSA kid
    _refused(world.check(wrong.sign(world.idp.claims())), "token_algorithm")


# --- the JWKS cache -------------------------------------------------------------------------------


def test_unknown_kid_flood_fetches_at_most_once_per_interval(
    world: World, keys: dict[str, SigningKey]
) -> None:
    assert world.idp.jwks_hits == 1
    for _ in range(200):
        fake = SigningKey(secrets.token_hex(8), "ES256", keys["ES256"].private, {})
        _refused(world.check(fake.sign(world.idp.claims())), "token_unknown_key")
        world.refresh(after=0.01)  # 2 s in all, less than the 10 s minimum between fetches
    assert world.idp.jwks_hits == 1
    world.refresh(after=10)
    assert world.idp.jwks_hits == 2  # one early refresh once the interval has passed


def test_key_rotation_is_picked_up_on_the_first_unknown_kid(world: World) -> None:
    new = make_key("ES256", "es256-2")
    world.idp.keys.append(new)
    token = new.sign(world.idp.claims(sub="rotated"))
    _refused(world.check(token), "token_unknown_key")  # not fetched yet: fail closed
    world.refresh(after=10)
    assert world.check(token).principal == "rotated"


def test_idp_down_keeps_serving_stale_keys_new_kids_fail_closed(
    world: World, keys: dict[str, SigningKey]
) -> None:
    world.idp.down = True
    world.refresh(after=10_000)  # the scheduled refresh fails
    assert world.check(keys["RS256"].sign(world.idp.claims(sub="bob"))).principal == "bob"
    newcomer = make_key("EdDSA", "eddsa-2")
    world.idp.keys.append(newcomer)
    world.refresh(after=10)
    _refused(world.check(newcomer.sign(world.idp.claims())), "token_unknown_key")
    world.idp.down = False
    world.refresh(after=10)
    assert world.check(newcomer.sign(world.idp.claims(sub="eve"))).principal == "eve"


def test_discovery_finds_the_jwks(tmp_path: Path, idp: Idp, keys: dict[str, SigningKey]) -> None:
    w = World(tmp_path, idp, "    jwks: {discovery: true, refresh: 1m}\n")
    w.refresh()
    assert (idp.discovery_hits, idp.jwks_hits) == (1, 1)
    assert w.check(keys["RS256"].sign(idp.claims(sub="found"))).principal == "found"
    w.refresh(after=30)
    assert idp.jwks_hits == 1
    w.refresh(after=31)  # the 1 m refresh period has passed
    assert (idp.discovery_hits, idp.jwks_hits) == (2, 2)


def test_nothing_fetched_yet_means_unknown_key(
    tmp_path: Path, idp: Idp, keys: dict[str, SigningKey]
) -> None:
    w = World(tmp_path, idp)  # no refresh has run: the server started before the IdP answered
    _refused(w.check(keys["RS256"].sign(idp.claims())), "token_unknown_key")


def test_inline_keys_work_offline(tmp_path: Path, idp: Idp, keys: dict[str, SigningKey]) -> None:
    inline = json.dumps([keys["EdDSA"].jwk])
    snap = _snapshot(tmp_path, idp, f"    jwks: {{keys: {inline}}}\n")
    token = keys["EdDSA"].sign(idp.claims(sub="offline"))
    view = RequestView(
        method="GET", raw_path="/profile", host="h", headers={"authorization": f"Bearer {token}"}
    )
    assert evaluate(snap, view, "d").principal == "offline"  # no runtime: inline keys only
    assert idp.jwks_hits == 0


# --- policy errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwt_block", "code"),
    [
        ("    jwks: {uri: http://x/jwks}\n    algorithms: [HS256]\n", "jwt.algorithm"),
        ("    jwks: {uri: http://x/jwks}\n    algorithms: [none]\n", "jwt.algorithm"),
        ("    jwks: {uri: http://x/jwks, keys: []}\n", "jwt.jwks"),
        ("    jwks: {}\n", "jwt.jwks"),
        ("    jwks: {uri: ftp://x/jwks}\n", "jwt.jwks"),
        ("    jwks: {keys: [{kty: RSA, n: AQAB}]}\n", "jwt.jwks"),
        ("    jwks: {uri: http://x/jwks, refresh: 1s}\n", "jwt.refresh"),
    ],
)
def test_invalid_jwt_blocks(tmp_path: Path, idp: Idp, jwt_block: str, code: str) -> None:
    with pytest.raises(PolicyLoadError) as info:
        _snapshot(tmp_path, idp, jwt_block)
    codes = {e.code for e in info.value.errors}
    assert code in codes, info.value.errors
    assert all(e.file == "p.yaml" and e.line > 0 for e in info.value.errors)


def test_leeway_is_bounded(tmp_path: Path, idp: Idp) -> None:
    text = POLICY.replace("leeway: 5s", "leeway: 1h").replace("ISSUER", idp.issuer)
    (tmp_path / "p.yaml").write_text(text.replace("JWKS\n", "    jwks: {uri: http://x/j}\n"))
    with pytest.raises(PolicyLoadError) as info:
        load_directory(tmp_path)
    [e] = info.value.errors
    assert (e.code, e.line, e.field) == ("jwt.leeway", 10, "spec.jwt.leeway")


# --- claims in rules ------------------------------------------------------------------------------

CLAIMS_POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: c}
spec:
  jwt:
    issuer: https://issuer.test
    audiences: [aud]
    jwks: {keys: KEYS}
  routes:
    - name: r
      match: {paths: [/r]}
      rules:
        - {name: suspended, effect: deny, when: {claims: [{name: suspended, equals: "true"}]}}
        - {name: scoped, effect: allow, when: {claims: [{name: scope, contains: orders.read}]}}
        - name: senior
          effect: allow
          when: {claims: [{name: level, gte: 3}, {name: org.id, equals: "42"}]}
        - {name: mail, effect: allow, when: {claims: [{name: email, regex: '.*@example\\.com'}]}}
        - {name: eng, effect: allow, when: {claims: [{name: groups, prefix: eng-}]}}
"""


@pytest.fixture
def claims_snapshot(tmp_path: Path, keys: dict[str, SigningKey]) -> PolicySnapshot:
    text = CLAIMS_POLICY.replace("KEYS", json.dumps([keys["ES256"].jwk]))
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    return load_directory(tmp_path)


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"scope": "profile orders.read"}, "scoped"),
        ({"scope": ["orders.read"]}, "scoped"),
        ({"scope": "orders.readwrite"}, None),  # a token, not a substring
        ({"level": 3, "org": {"id": 42}}, "senior"),
        ({"level": 2.5, "org": {"id": 42}}, None),
        ({"level": "9", "org": {"id": 42}}, None),  # numbers compare numbers only
        ({"level": 5, "org": {"id": "43"}}, None),
        ({"email": "dana@example.com"}, "mail"),
        ({"email": "dana@example.com.evil"}, None),  # regex matches the whole value
        ({"groups": ["ops", "eng-core"]}, "eng"),
        ({"suspended": True, "scope": "orders.read"}, "suspended"),
    ],
)
def test_claim_conditions(
    claims_snapshot: PolicySnapshot,
    keys: dict[str, SigningKey],
    extra: dict[str, Any],
    rule: str | None,
) -> None:
    now = int(time.time())
    claims = {"iss": "https://issuer.test", "aud": "aud", "sub": "dana", "exp": now + 60, **extra}
    token = keys["ES256"].sign(claims)
    view = RequestView(
        method="GET", raw_path="/r", host="h", headers={"authorization": f"Bearer {token}"}
    )
    d = evaluate(claims_snapshot, view, "d")
    assert d.rule == rule, d
    assert d.allowed == (rule not in (None, "suspended"))


@pytest.mark.parametrize(
    ("claim", "code"),
    [
        ("{name: a, equals: x, prefix: y}", "claim.op"),
        ("{name: a}", "claim.op"),
        ("{name: a, gt: high}", "claim.number"),
        ("{name: a, present: false}", "claim.op"),
        ("{name: a, regex: '(unclosed'}", "condition.regex"),
    ],
)
def test_invalid_claim_conditions(
    tmp_path: Path, keys: dict[str, SigningKey], claim: str, code: str
) -> None:
    text = CLAIMS_POLICY.replace("KEYS", json.dumps([keys["ES256"].jwk]))
    text = text.replace("{name: scope, contains: orders.read}", claim)
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as info:
        load_directory(tmp_path)
    [e] = info.value.errors
    assert (e.code, e.line) == (code, 14), e


def test_remembered_tokens_expire_and_memory_is_bounded(
    tmp_path: Path, idp: Idp, keys: dict[str, SigningKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    inline = json.dumps([keys["EdDSA"].jwk])
    provider = _snapshot(tmp_path, idp, f"    jwks: {{keys: {inline}}}\n").jwt_providers[0]
    clock = Clock()
    clock.now = time.time()
    verifier = Verifier(clock=clock)
    token = keys["EdDSA"].sign(idp.claims(ttl=3600))
    assert verifier.verify(provider, token)["sub"] == "alice"
    assert provider.keys is not None
    saved = dict(provider.keys)
    provider.keys.clear()  # type: ignore[attr-defined]  # as if the key were revoked
    clock.now += 59
    assert verifier.verify(provider, token)["sub"] == "alice"  # still remembered
    clock.now += 2
    with pytest.raises(TokenError) as info:
        verifier.verify(provider, token)  # 60 s later it is checked again
    assert info.value.reason == "token_unknown_key"
    provider.keys.update(saved)  # type: ignore[attr-defined]
    monkeypatch.setattr(jwt_module, "VERIFIED_CACHE", 5)
    for n in range(20):
        verifier.verify(provider, keys["EdDSA"].sign(idp.claims(sub=f"u{n}")))
    assert len(verifier._verified) == 5


def test_claims_to_upstream_headers_and_limits_by_claim(
    tmp_path: Path, keys: dict[str, SigningKey]
) -> None:
    text = CLAIMS_POLICY.replace("KEYS", json.dumps([keys["ES256"].jwk])) + (
        "      onAllow:\n"
        "        claimHeaders:\n"
        "          - {claim: email, header: X-User-Email}\n"
        "          - {claim: org.id, header: x-org}\n"
        "      rateLimits:\n"
        "        - {name: per-org, key: 'claim:org.id', requests: 1, per: 1m}\n"
    )
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    snap = load_directory(tmp_path)
    runtime = Runtime(LocalLimiter())
    now = int(time.time())

    def call(**claims: Any) -> Decision:
        base = {"iss": "https://issuer.test", "aud": "aud", "sub": "dana", "exp": now + 60}
        token = keys["ES256"].sign({**base, "scope": "orders.read", **claims})
        headers = {"authorization": f"Bearer {token}", "x-user-email": "spoofed@evil"}
        view = RequestView(method="GET", raw_path="/r", host="h", headers=headers)
        return evaluate(snap, view, "d", runtime)

    d = call(email="dana@example.com", org={"id": 42})
    sets = {n: v for n, v, _ in d.upstream_headers_set}
    assert (sets["x-user-email"], sets["x-org"]) == ("dana@example.com", "42")
    assert call(email="x@example.com", org={"id": 42}).reason == "rate_limited"  # org 42 again
    other = call(org={"id": 7})  # no email claim: the client's x-user-email is removed
    assert other.allowed
    assert "x-user-email" in other.upstream_headers_remove
    assert "x-user-email" not in {n for n, _, _ in other.upstream_headers_set}
    injected = call(email="evil\r\nx-injected: 1", org={"id": 8})
    assert sorted(injected.upstream_headers_remove) == ["authorization", "x-user-email"]
    assert "x-user-email" not in {n for n, _, _ in injected.upstream_headers_set}


def test_jwks_from_a_file_is_watched(tmp_path: Path, idp: Idp, keys: dict[str, SigningKey]) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [keys["EdDSA"].jwk]}))
    snapshot_dir = tmp_path
    text = POLICY.replace("ISSUER", idp.issuer).replace("AUDIENCE", AUDIENCE)
    (snapshot_dir / "p.yaml").write_text(text.replace("JWKS\n", "    jwks: {file: jwks.json}\n"))
    holder = SnapshotHolder(snapshot_dir, Metrics())
    assert holder.load()
    assert holder.snapshot is not None
    assert holder.snapshot.watched == (tmp_path / "jwks.json",)
    token = keys["EdDSA"].sign(idp.claims(sub="filed"))
    view = RequestView(
        method="GET", raw_path="/profile", host="h", headers={"authorization": f"Bearer {token}"}
    )
    assert evaluate(holder.snapshot, view, "d").principal == "filed"
    assert holder.changed()  # newly watched files: one more load takes their fingerprint
    assert holder.load()
    assert not holder.changed()
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [keys["ES256"].jwk]}))
    assert holder.changed()  # a key rotation in the file reloads like a policy edit
    assert holder.load()
    assert evaluate(holder.snapshot, view, "d").reason == "token_unknown_key"


@pytest.mark.parametrize("content", [None, "not json", '{"keys": 3}'])
def test_unreadable_jwks_files(tmp_path: Path, idp: Idp, content: str | None) -> None:
    if content is not None:
        (tmp_path / "jwks.json").write_text(content)
    with pytest.raises(PolicyLoadError) as info:
        _snapshot(tmp_path, idp, "    jwks: {file: jwks.json}\n")
    [e] = info.value.errors
    assert (e.code, e.file, e.line, e.field) == ("jwt.jwks", "p.yaml", 8, "spec.jwt.jwks.file")
