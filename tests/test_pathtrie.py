"""Path templates, the segment trie, host keys, globs and the route index against brute force."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pytest

from guardrail_authz.policy.compile import compile_policies
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.matchers import (
    CompiledCondition,
    GlobSet,
    compile_regex,
    host_candidates,
)
from guardrail_authz.policy.pathtrie import ANY_METHOD, PathTrie, TemplateError, parse_template
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.policy.source import (
    ApiKeyConfig,
    ApiKeySet,
    Match,
    MatchOp,
    OnAllow,
    Policy,
    Route,
    Rule,
    When,
    Where,
)

# --- parse_template ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "segments"),
    [
        ("/", ()),
        ("/a", ("a",)),
        ("/a/b/", ("a", "b")),
        ("//a//b", ("a", "b")),
        ("/orders/{id}", ("orders", "{}")),
        ("/orders/{order_id}/items/{_i2}", ("orders", "{}", "items", "{}")),
        ("/files/*/meta", ("files", "{}", "meta")),
        ("/static/**", ("static", "**")),
        ("/**", ("**",)),
        ("/v1.2/a-b_c~d", ("v1.2", "a-b_c~d")),
    ],
)
def test_parse_template(template: str, segments: tuple[str, ...]) -> None:
    """Params and '*' become one '{}' segment; '**' stays; empty segments vanish."""
    assert parse_template(template) == segments


@pytest.mark.parametrize(
    "template",
    ["/a/**/b", "/**/a", "/a/{id", "/a/id}", "/a/{id}x", "/a/{1x}", "/a/{}", "/a/b*", "/a/***"],
)
def test_parse_template_errors(template: str) -> None:
    """'**' only last; braces and stars only as whole segments."""
    with pytest.raises(TemplateError):
        parse_template(template)


# --- PathTrie ------------------------------------------------------------------------------------


def _trie(*entries: tuple[str, str, str]) -> PathTrie[str]:
    """A trie of (template, method, value) entries; '*' is any method."""
    trie: PathTrie[str] = PathTrie()
    for template, method, value in entries:
        assert trie.insert(parse_template(template), method, value) is None
    return trie


def _look(trie: PathTrie[str], path: str, method: str = "GET") -> str | None:
    return trie.lookup([s for s in path.split("/") if s], method)


def test_insert_reports_the_existing_value() -> None:
    """Inserting the same template and method again returns what is already there."""
    trie = _trie(("/a/{x}", "GET", "one"))
    assert trie.insert(parse_template("/a/*"), "GET", "two") == "one"
    assert trie.insert(parse_template("/a/*"), ANY_METHOD, "three") is None
    assert trie.insert(parse_template("/a/**"), "GET", "four") is None
    assert trie.insert(parse_template("/a/**"), "GET", "five") == "four"
    assert _look(trie, "/a/b") == "one"


def test_literal_beats_param_beats_rest() -> None:
    """At each segment a literal child is tried first, then the parameter, then '**'."""
    trie = _trie(
        ("/a/b", ANY_METHOD, "literal"),
        ("/a/{x}", ANY_METHOD, "param"),
        ("/a/**", ANY_METHOD, "rest"),
    )
    assert _look(trie, "/a/b") == "literal"
    assert _look(trie, "/a/c") == "param"
    assert _look(trie, "/a/b/c") == "rest"
    assert _look(trie, "/a") == "rest"
    assert _look(trie, "/b") is None


def test_precedence_is_left_to_right() -> None:
    """An earlier literal segment outranks a later one: /a/** beats /{x}/b for /a/b."""
    trie = _trie(("/a/**", ANY_METHOD, "a-rest"), ("/{x}/b", ANY_METHOD, "x-b"))
    assert _look(trie, "/a/b") == "a-rest"
    assert _look(trie, "/c/b") == "x-b"


def test_backtracking_through_several_levels() -> None:
    """A dead end deep in the literal branch falls back to the parameter branch."""
    trie = _trie(
        ("/a/b/c/d", ANY_METHOD, "literal"),
        ("/a/{x}/c/e", ANY_METHOD, "param-1"),
        ("/{x}/b/{y}/f", ANY_METHOD, "param-0"),
        ("/a/b/**", ANY_METHOD, "rest-2"),
    )
    assert _look(trie, "/a/b/c/d") == "literal"
    assert _look(trie, "/a/b/c/e") == "rest-2"  # /a/b/** outranks /a/{x}/c/e at segment 2
    assert _look(trie, "/a/z/c/e") == "param-1"
    assert _look(trie, "/q/b/c/f") == "param-0"
    assert _look(trie, "/q/b/c/g") is None


def test_longer_prefix_wins_and_falls_back() -> None:
    """Deeper '**' entries win; a miss below them returns to the shallower one."""
    trie = _trie(("/**", ANY_METHOD, "root"), ("/docs/**", ANY_METHOD, "docs"))
    trie.insert(parse_template("/docs/v1/**"), ANY_METHOD, "v1")
    assert _look(trie, "/docs/v1/x/y") == "v1"
    assert _look(trie, "/docs/v1") == "v1"
    assert _look(trie, "/docs/v2") == "docs"
    assert _look(trie, "/") == "root"
    assert _look(trie, "/other") == "root"


def test_method_exact_beats_any() -> None:
    """At one template an exact method wins over the any-method entry."""
    trie = _trie(("/m", "GET", "get"), ("/m", ANY_METHOD, "any"))
    assert _look(trie, "/m", "GET") == "get"
    assert _look(trie, "/m", "POST") == "any"


def test_method_miss_backtracks_to_other_templates() -> None:
    """A template whose methods do not fit is skipped like a path miss."""
    trie = _trie(
        ("/n/x", "GET", "get-literal"),
        ("/n/{y}", "POST", "post-param"),
        ("/n/**", "DELETE", "delete-rest"),
    )
    assert _look(trie, "/n/x", "GET") == "get-literal"
    assert _look(trie, "/n/x", "POST") == "post-param"
    assert _look(trie, "/n/x", "DELETE") == "delete-rest"
    assert _look(trie, "/n/x", "PUT") is None


def test_exact_leaf_before_rest_at_same_node() -> None:
    """/a beats /a/** for the path /a; the rest entry catches other methods."""
    trie = _trie(("/a", "GET", "exact"), ("/a/**", ANY_METHOD, "rest"))
    assert _look(trie, "/a", "GET") == "exact"
    assert _look(trie, "/a", "POST") == "rest"


def test_empty_trie_and_root() -> None:
    """An empty trie finds nothing; '/' is the empty segment list."""
    assert _look(_trie(), "/") is None
    assert _look(_trie(("/", ANY_METHOD, "root")), "/") == "root"
    assert _look(_trie(("/", ANY_METHOD, "root")), "/a") is None


# --- matchers ------------------------------------------------------------------------------------


def test_globset_exact_and_globs() -> None:
    """Exact names and '*' globs, '*' spanning any characters including '/'."""
    globs = GlobSet.build(["alice", "svc-*", "spiffe://cluster.local/ns/*/sa/reporter"])
    assert globs
    assert globs.matches("alice")
    assert not globs.matches("alice2")
    assert globs.matches("svc-")
    assert globs.matches("svc-a/b")
    assert globs.matches("spiffe://cluster.local/ns/a/b/sa/reporter")
    assert not globs.matches("spiffe://cluster.local/ns/a/sa/reporter-2")
    assert not globs.matches("xsvc-a")
    assert not globs.matches(None)


def test_globset_escapes_regex_characters() -> None:
    """Only '*' is special: dots, brackets and pluses are literal."""
    globs = GlobSet.build(["a.b+*", "[x]"])
    assert globs.matches("a.b+c")
    assert not globs.matches("axb+c")
    assert not globs.matches("aab")
    assert globs.matches("[x]")
    assert not globs.matches("x")


def test_globset_empty_and_star() -> None:
    """An empty set is falsy and matches nothing; '*' matches every string, even ''."""
    empty = GlobSet.build([])
    assert not empty
    assert not empty.matches("a")
    star = GlobSet.build(["*"])
    assert star.matches("")
    assert star.matches("anything/at:all")
    assert not star.matches(None)


@pytest.mark.parametrize(
    ("op", "value", "actual", "holds"),
    [
        (MatchOp.EQUALS, "a", "a", True),
        (MatchOp.EQUALS, "a", "A", False),
        (MatchOp.EQUALS, "", "", True),
        (MatchOp.EQUALS, "a", None, False),
        (MatchOp.PREFIX, "ab", "abc", True),
        (MatchOp.PREFIX, "ab", "xab", False),
        (MatchOp.PREFIX, "ab", None, False),
        (MatchOp.REGEX, "[0-9]+", "123", True),
        (MatchOp.REGEX, "[0-9]+", "123a", False),
        (MatchOp.REGEX, "[0-9]+", "a123", False),
        (MatchOp.REGEX, "a|b", "b", True),
        (MatchOp.REGEX, "[0-9]+", None, False),
        (MatchOp.PRESENT, "", "", True),
        (MatchOp.PRESENT, "", None, False),
        (MatchOp.ABSENT, "", None, True),
        (MatchOp.ABSENT, "", "", False),
    ],
)
def test_condition_ops(op: MatchOp, value: str, actual: str | None, holds: bool) -> None:
    """Each operator's truth table, regexes as full matches."""
    regex = compile_regex(value) if op is MatchOp.REGEX else None
    assert not isinstance(regex, str)
    assert CompiledCondition("x", op, value, regex).holds(actual) is holds


def test_compile_regex_reports_errors_as_text() -> None:
    """A bad regex comes back as a message, not an exception."""
    bad = compile_regex("a(")
    assert isinstance(bad, str)
    assert bad.startswith("invalid regex 'a(': ")
    assert isinstance(compile_regex("a+"), re.Pattern)


@pytest.mark.parametrize(
    ("host", "keys"),
    [
        ("api.example.com", ["api.example.com", "*.example.com", "*.com", "*"]),
        ("localhost", ["localhost", "*"]),
        ("", ["", "*"]),
        ("[::1]", ["[::1]", "*"]),
    ],
)
def test_host_candidates(host: str, keys: list[str]) -> None:
    """Exact host, then every wildcard suffix from the longest, then '*'."""
    assert host_candidates(host) == keys


# --- the route index against a brute-force scan --------------------------------------------------

HOSTS = ["*", "*.example.com", "api.example.com", "*.eu.example.com", "shop.eu.example.com"]
REQUEST_HOSTS = [
    "api.example.com",
    "www.example.com",
    "shop.eu.example.com",
    "x.eu.example.com",
    "example.com",
    "other.org",
]
PORTS: list[int | None] = [None, 80, 443]
METHODS: list[str | None] = [None, "GET", "POST", "DELETE"]
WORDS = ["a", "b", "c", "d", "e"]


@dataclass(frozen=True, slots=True)
class Generated:
    """One generated route in brute-force form."""

    id: str
    host: str
    port: int  # 0 = any
    segments: tuple[str, ...]  # literals, '{}', and '**' last for prefixes
    method: str  # '*' = any


def _generate(rng: random.Random, count: int) -> tuple[list[Route], list[Generated]]:
    """count routes with distinct (host, port, template, method) keys, as source and brute form."""
    where = Where("generated.yaml", 1, "")
    rule = Rule("ok", "allow", When(), None, None, None, where)
    seen: set[tuple[str, int, tuple[str, ...], str]] = set()
    routes: list[Route] = []
    flat: list[Generated] = []
    while len(routes) < count:
        depth = rng.randint(0, 4)
        parts = [rng.choice([*WORDS, "{p}", "*"]) for _ in range(depth)]
        prefix = rng.random() < 0.25
        host, port, method = rng.choice(HOSTS), rng.choice(PORTS), rng.choice(METHODS)
        template = "/" + "/".join(parts)
        segments = parse_template(template) + (("**",) if prefix else ())
        key = (host, port or 0, segments, method or ANY_METHOD)
        if key in seen:
            continue
        seen.add(key)
        name = f"r{len(routes)}"
        match = Match(
            (host,),
            (port,) if port else None,
            (method,) if method else (),
            () if prefix else (template,),
            (template,) if prefix else (),
            where,
        )
        routes.append(Route(name, name, match, (rule,), OnAllow(), where))
        flat.append(Generated(f"gen/{name}", *key))
    return routes, flat


def _host_rank(pattern: str, host: str) -> tuple[int, int] | None:
    if pattern == host:
        return (0, 0)
    if pattern == "*":
        return (2, 0)
    suffix = pattern[2:]
    if host.endswith("." + suffix):
        return (1, -len(suffix))
    return None


def _path_rank(template: tuple[str, ...], path: list[str]) -> tuple[int, ...] | None:
    rest = bool(template) and template[-1] == "**"
    fixed = template[:-1] if rest else template
    if len(path) < len(fixed) or (not rest and len(path) != len(fixed)):
        return None
    ranks: list[int] = []
    for want, got in zip(fixed, path, strict=False):
        if want == "{}":
            ranks.append(1)
        elif want == got:
            ranks.append(0)
        else:
            return None
    return (*ranks, 2) if rest else tuple(ranks)


def _brute_force(
    routes: list[Generated], host: str, port: int, path: list[str], method: str
) -> str | None:
    """The most specific route by (host, port, segments left to right, method), by scanning."""
    best: tuple[object, ...] | None = None
    found: str | None = None
    for r in routes:
        host_rank = _host_rank(r.host, host)
        if host_rank is None:
            continue
        if r.port and r.port != port:
            continue
        if r.method not in (method, ANY_METHOD):
            continue
        path_rank = _path_rank(r.segments, path)
        if path_rank is None:
            continue
        rank = (host_rank, 0 if r.port else 1, path_rank, 0 if r.method == method else 1)
        if best is None or rank < best:
            best, found = rank, r.id
    return found


def _request_path(rng: random.Random, flat: list[Generated]) -> list[str]:
    if rng.random() < 0.3:
        return [rng.choice([*WORDS, "zz"]) for _ in range(rng.randint(0, 5))]
    path: list[str] = []
    for seg in rng.choice(flat).segments:
        if seg == "**":
            path.extend(rng.choice(WORDS) for _ in range(rng.randint(0, 2)))
        elif seg == "{}":
            path.append(rng.choice([*WORDS, "42"]))
        else:
            path.append(seg if rng.random() < 0.9 else "zz")
    return path


def _snapshot(routes: list[Route]) -> PolicySnapshot:
    where = Where("generated.yaml", 1, "")
    keys = ApiKeyConfig(("x-api-key",), True, (), ())
    policy = Policy("gen", "1", ("*",), (), "closed", keys, tuple(routes), where)
    docs: list[Policy | ApiKeySet] = [policy]
    return compile_policies(docs, "0" * 12, ["generated.yaml"], ErrorSink())


def test_route_index_matches_brute_force() -> None:
    """10,000 generated routes: the index picks what a full scan by precedence picks."""
    rng = random.Random(20240506)
    routes, flat = _generate(rng, 10_000)
    snapshot = _snapshot(routes)
    assert snapshot.route_count == 10_000
    hits = 0
    for _ in range(400):
        host = rng.choice(REQUEST_HOSTS)
        port = rng.choice([0, 80, 443, 8080])
        method = rng.choice(["GET", "POST", "DELETE", "PUT"])
        path = _request_path(rng, flat)
        got = snapshot.index.lookup(host, port, path, method)
        want = _brute_force(flat, host, port, path, method)
        assert (got.id if got else None) == want, (host, port, path, method)
        hits += want is not None
    assert hits > 200  # the generator must exercise matches, not only misses
