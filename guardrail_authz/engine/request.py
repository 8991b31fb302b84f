"""RequestView: the attributes of one request, parsed lazily and only as far as needed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

MAX_PATH = 16 * 1024


class BadRequestError(Exception):
    """The request's own attributes are unusable; answered with a 4xx deny, not a crash."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class RequestView:
    """What evaluation may look at; path segments and query are decoded on first use."""

    __slots__ = (
        "_address",
        "_query",
        "_query_lists",
        "_segments",
        "body",
        "guardrail_names",
        "headers",
        "host",
        "method",
        "port",
        "raw_path",
        "request_id",
        "source_principal",
    )

    def __init__(
        self,
        *,
        method: str,
        raw_path: str,
        host: str,
        headers: Mapping[str, str],
        port: int = 0,
        source_principal: str = "",
        body: bytes = b"",
        request_id: str = "",
        guardrail_names: tuple[str, ...] | None = None,
        source_address: str | Callable[[], str] = "",
    ) -> None:
        self.method = method.upper()
        self.raw_path = raw_path
        self.host = normalise_host(host)
        self.headers = headers
        self.port = port
        self.source_principal = source_principal
        self.body = body
        self.request_id = request_id
        # The header names starting with x-guardrail-, when the builder already knows them
        # (None: evaluation scans every name for spoofed guardrail headers itself).
        self.guardrail_names = guardrail_names
        self._address = source_address  # a function: read only when a limit needs it
        self._segments: list[str] | None = None
        self._query: dict[str, str] | None = None
        self._query_lists: dict[str, list[str]] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestView:
        """Build from the offline-evaluation JSON shape (method, path, host, headers, ...)."""
        headers = {str(k).lower(): str(v) for k, v in dict(data.get("headers") or {}).items()}
        host = str(data.get("host") or headers.get(":authority") or headers.get("host") or "")
        body = data.get("body") or ""
        return cls(
            method=str(data.get("method") or "GET"),
            raw_path=str(data.get("path") or ""),
            host=host,
            headers=headers,
            port=int(data.get("destination_port") or 0),
            source_principal=str(data.get("source_principal") or ""),
            source_address=str(data.get("source_address") or ""),
            body=body.encode() if isinstance(body, str) else bytes(body),
        )

    @property
    def source_address(self) -> str:
        """The downstream peer's IP address as Envoy saw it ("" when unknown)."""
        address = self._address
        if not isinstance(address, str):
            address = self._address = address()
        return address

    def header(self, name: str) -> str | None:
        """A header value by lower-case name, or None."""
        return self.headers.get(name)

    @property
    def segments(self) -> list[str]:
        """Decoded, non-empty path segments; raises BadRequestError for ambiguous paths."""
        if self._segments is None:
            self._segments = split_path(self.raw_path)
        return self._segments

    def query_param(self, name: str) -> str | None:
        """First value of a query parameter, or None."""
        if self._query is None:
            self._query = {k: v[0] for k, v in self.query_lists().items()}
        return self._query.get(name)

    def query_lists(self) -> dict[str, list[str]]:
        """Every query parameter with all its values, in order (decoded)."""
        if self._query_lists is None:
            _, _, qs = self.raw_path.partition("?")
            qs = qs.partition("#")[0]
            query: dict[str, list[str]] = {}
            for k, v in parse_qsl(qs, keep_blank_values=True):
                query.setdefault(k, []).append(v)
            self._query_lists = query
        return self._query_lists


def normalise_host(host: str) -> str:
    """Lower-case host without port ('Api.Example.com:8443' → 'api.example.com')."""
    host = host.lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def split_path(raw_path: str) -> list[str]:
    """Split a request path into decoded segments, refusing what upstreams may read differently."""
    if not raw_path or raw_path[0] != "/":
        raise BadRequestError(400, "bad_path", "request path is missing or not absolute")
    if len(raw_path) > MAX_PATH:
        raise BadRequestError(414, "path_too_long", "request path is too long")
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    out: list[str] = []
    for raw in path.split("/"):
        if not raw:
            continue
        seg = _decode(raw) if "%" in raw else raw
        if seg is not raw and ("/" in seg or "\\" in seg):
            raise BadRequestError(400, "ambiguous_path", "encoded slash in request path")
        if "\\" in seg:
            raise BadRequestError(400, "ambiguous_path", "backslash in request path")
        if seg.split(";", 1)[0] in (".", "..") or "\x00" in seg:
            raise BadRequestError(400, "ambiguous_path", "dot segment or NUL in request path")
        out.append(seg)
    return out


_HEX = frozenset("0123456789abcdefABCDEF")


def _decode(seg: str) -> str:
    i = seg.find("%")
    while i != -1:
        if len(seg) - i < 3 or seg[i + 1] not in _HEX or seg[i + 2] not in _HEX:
            raise BadRequestError(400, "bad_path", "malformed percent-encoding in request path")
        i = seg.find("%", i + 3)
    try:
        return unquote(seg, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestError(400, "bad_path", "percent-encoding is not UTF-8") from None
