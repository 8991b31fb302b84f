"""RequestView: host normalisation, path splitting, query parsing and the offline JSON shape."""

from __future__ import annotations

import pytest

from guardrail_authz.engine.request import (
    MAX_PATH,
    BadRequestError,
    RequestView,
    normalise_host,
    split_path,
)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("api.example.com", "api.example.com"),
        ("Api.Example.COM", "api.example.com"),
        ("api.example.com:8443", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("api.example.com.:80", "api.example.com"),
        ("10.0.0.1:8080", "10.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("::1", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[::1", "[::1"),
        ("", ""),
        ("localhost", "localhost"),
    ],
)
def test_normalise_host(raw: str, host: str) -> None:
    """Lower-case, without port or trailing dot; IPv6 literals keep their brackets."""
    assert normalise_host(raw) == host


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        ("/", []),
        ("/a/b", ["a", "b"]),
        ("//a///b/", ["a", "b"]),
        ("/a?x=/../y", ["a"]),
        ("/a#/../frag", ["a"]),
        ("/a?x#y", ["a"]),
        ("/caf%C3%A9", ["café"]),
        ("/%41%62", ["Ab"]),
        ("/a%20b", ["a b"]),
        ("/a+b", ["a+b"]),
        ("/a%3Fb", ["a?b"]),
        ("/a%23b", ["a#b"]),
        ("/..a/a..", ["..a", "a.."]),
        ("/a;b=c", ["a;b=c"]),
        ("/" + "a/" * 100, ["a"] * 100),
    ],
)
def test_split_path(raw: str, segments: list[str]) -> None:
    """Decoded, non-empty segments; query and fragment are not part of the path."""
    assert split_path(raw) == segments


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        ("", 400, "bad_path"),
        ("a/b", 400, "bad_path"),
        ("*", 400, "bad_path"),
        ("?a=1", 400, "bad_path"),
        ("/a/%zz", 400, "bad_path"),
        ("/a/%2", 400, "bad_path"),
        ("/a/%", 400, "bad_path"),
        ("/a/%g0", 400, "bad_path"),
        ("/a/%ff", 400, "bad_path"),
        ("/a/%c0%ae", 400, "bad_path"),
        ("/a/%e2%82", 400, "bad_path"),
        ("/a/.", 400, "ambiguous_path"),
        ("/a/..", 400, "ambiguous_path"),
        ("/a/%2e", 400, "ambiguous_path"),
        ("/a/%2E%2e", 400, "ambiguous_path"),
        ("/a%2fb", 400, "ambiguous_path"),
        ("/a%2Fb", 400, "ambiguous_path"),
        ("/a%5cb", 400, "ambiguous_path"),
        ("/a\\b", 400, "ambiguous_path"),
        ("/a%00", 400, "ambiguous_path"),
        ("/a\x00", 400, "ambiguous_path"),
        ("/" + "a" * MAX_PATH, 414, "path_too_long"),
    ],
)
def test_split_path_refuses(raw: str, status: int, reason: str) -> None:
    """Paths an upstream could read differently, or cannot read, are refused."""
    with pytest.raises(BadRequestError) as info:
        split_path(raw)
    assert (info.value.status, info.value.reason) == (status, reason)
    assert info.value.message == str(info.value)


def test_max_path_counts_the_query() -> None:
    """The length limit covers the whole request target, query included."""
    assert split_path("/a?" + "q" * (MAX_PATH - 3)) == ["a"]
    with pytest.raises(BadRequestError):
        split_path("/a?" + "q" * (MAX_PATH - 2))


def _view(raw_path: str = "/", **headers: str) -> RequestView:
    return RequestView(method="get", raw_path=raw_path, host="H:1", headers=headers)


@pytest.mark.parametrize(
    ("query", "name", "value"),
    [
        ("", "a", None),
        ("?a=1", "a", "1"),
        ("?a=1&a=2", "a", "1"),
        ("?a=", "a", ""),
        ("?a", "a", ""),
        ("?a=x+y", "a", "x y"),
        ("?a=x%2By", "a", "x+y"),
        ("?a=%zz", "a", "%zz"),
        ("?a=%ff", "a", "\ufffd"),
        ("?A=1", "a", None),
        ("?a=1#b=2", "b", None),
        ("?a=1;b=2", "b", None),
        ("?x=1&a=%2F..%2F", "a", "/../"),
        ("?", "a", None),
    ],
)
def test_query_param(query: str, name: str, value: str | None) -> None:
    """First value, blanks kept, '+' and escapes decoded, never raising, names case-sensitive."""
    assert _view("/p" + query).query_param(name) == value


def test_view_basics() -> None:
    """Method upper-cased, host normalised, headers by lower-case name, defaults empty."""
    view = _view("/a", **{"x-a": "1"})
    assert view.method == "GET"
    assert view.host == "h"
    assert view.header("x-a") == "1"
    assert view.header("x-b") is None
    assert (view.port, view.source_principal, view.body, view.request_id) == (0, "", b"", "")


def test_segments_are_lazy_and_cached() -> None:
    """A bad path only raises when segments are asked for; good ones are computed once."""
    bad = _view("/a/%zz")
    with pytest.raises(BadRequestError):
        _ = bad.segments
    good = _view("/a/b")
    assert good.segments is good.segments


def test_from_json_defaults() -> None:
    """Missing fields become GET, an empty path (refused later), no host, port 0."""
    view = RequestView.from_json({})
    assert (view.method, view.raw_path, view.host, view.port) == ("GET", "", "", 0)
    assert dict(view.headers) == {}
    with pytest.raises(BadRequestError):
        _ = view.segments


def test_from_json_full() -> None:
    """Header names are lower-cased, values and ports stringified/converted, body encoded."""
    view = RequestView.from_json(
        {
            "method": "delete",
            "path": "/x?y=1",
            "host": "API.example.com:8443",
            "headers": {"X-Api-Key": "k", "X-Num": 5},
            "source_principal": "spiffe://a/b",
            "destination_port": "8443",
            "body": "héllo",
        }
    )
    assert view.method == "DELETE"
    assert view.host == "api.example.com"
    assert dict(view.headers) == {"x-api-key": "k", "x-num": "5"}
    assert view.port == 8443
    assert view.source_principal == "spiffe://a/b"
    assert view.body == "héllo".encode()
    assert view.query_param("y") == "1"


@pytest.mark.parametrize(
    ("data", "host"),
    [
        ({"host": "a.test", "headers": {":authority": "b.test", "host": "c.test"}}, "a.test"),
        ({"headers": {":authority": "b.test", "host": "c.test"}}, "b.test"),
        ({"headers": {"Host": "C.test:80"}}, "c.test"),
    ],
)
def test_from_json_host_sources(data: dict[str, object], host: str) -> None:
    """host wins over :authority, which wins over the Host header."""
    assert RequestView.from_json(data).host == host
