"""JWKS fetched from identity providers at run time: cached, refreshed, served stale.

- Nothing waits for an IdP: keys are fetched in the background (the server starts at once;
  tokens signed by keys not fetched yet are refused with `token_unknown_key`).
- Keys are refreshed every provider's `refresh` period, and early when a token names an
  unknown `kid` (key rotation), but at most once per MIN_REFRESH seconds per source, so a
  flood of tokens with random kids cannot hammer the IdP.
- When the IdP cannot be reached or answers garbage, the keys fetched last keep serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jwt import PyJWK

from guardrail_authz.identity.jwt import JwtProvider, key_set

log = logging.getLogger(__name__)
MIN_REFRESH = 10.0  # seconds between two fetches of one source, whatever tokens arrive
FETCH_TIMEOUT = 5.0
MAX_BYTES = 1 << 20
DISCOVERY = "/.well-known/openid-configuration"


class FetchError(Exception):
    """A JWKS (or discovery document) could not be fetched or read."""


def fetch_json(url: str) -> object:
    """GET a JSON document (at most 1 MiB, FETCH_TIMEOUT seconds)."""
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{url}: only http and https URLs are fetched")
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as resp:  # noqa: S310
            body = resp.read(MAX_BYTES + 1)
    except OSError as exc:
        raise FetchError(f"{url}: {exc}") from None
    if len(body) > MAX_BYTES:
        raise FetchError(f"{url}: larger than {MAX_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise FetchError(f"{url}: not JSON") from None


@dataclass(slots=True)
class _Source:
    """One remote JWKS: a jwks URI, or an issuer whose discovery document names it."""

    remote: str
    discover: bool
    refresh: float
    keys: dict[str, PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0  # last successful fetch (0: never)
    attempted_at: float = -1e18  # last attempt, successful or not
    wanted: bool = False  # a token named a kid we do not have


class JwksCache:
    """Remote key sets of every provider in the active snapshot."""

    def __init__(
        self,
        fetch: Callable[[str], object] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
        min_refresh: float = MIN_REFRESH,
        on_refresh: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_refresh = on_refresh  # (source, succeeded): the server counts refreshes
        self._clock = clock
        self._min_refresh = min_refresh
        self._sources: dict[str, _Source] = {}
        self._wake: asyncio.Event | None = None

    def track(self, providers: Iterable[JwtProvider]) -> None:
        """Follow the remote sources of these providers (the active snapshot's); keys already
        fetched for a source that stays are kept."""
        current: dict[str, _Source] = {}
        for p in providers:
            if not p.remote or p.remote in current:
                continue
            src = self._sources.get(p.remote) or _Source(p.remote, p.jwks_uri is None, p.refresh)
            src.refresh = p.refresh
            current[p.remote] = src
        self._sources = current
        self._poke()

    def lookup(self, provider: JwtProvider, kid: str) -> PyJWK | None:
        """The key for kid, or None; an unknown kid asks for an early refresh (rate-limited)."""
        src = self._sources.get(provider.remote)
        if src is None:
            return None
        key = src.keys.get(kid)
        if key is None and not src.wanted:
            src.wanted = True
            self._poke()
        return key

    def refresh_due(self) -> None:
        """Fetch every source that is due (synchronously; the server runs this in a thread)."""
        now = self._clock()
        for src in list(self._sources.values()):
            if now - src.attempted_at < self._min_refresh:
                continue
            if src.wanted or now - src.fetched_at >= src.refresh or not src.keys:
                self._refresh(src, now)

    def _refresh(self, src: _Source, now: float) -> None:
        src.attempted_at = now
        src.wanted = False
        try:
            uri = self._discover(src.remote) if src.discover else src.remote
            keys = key_set(self._fetch(uri))
        except (FetchError, ValueError) as exc:
            stale = f"keeping {len(src.keys)} keys fetched before" if src.keys else "no keys yet"
            log.warning("JWKS refresh failed (%s); %s", exc, stale)
            if self._on_refresh is not None:
                self._on_refresh(src.remote, False)
            return
        src.keys = keys
        src.fetched_at = now
        if self._on_refresh is not None:
            self._on_refresh(src.remote, True)
        log.info("JWKS from %s: %d keys (%s)", src.remote, len(keys), ", ".join(sorted(keys)))

    def _discover(self, issuer: str) -> str:
        doc = self._fetch(issuer.rstrip("/") + DISCOVERY)
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str):
            raise FetchError(f"{issuer}: the discovery document has no jwks_uri")
        return uri

    def next_due(self) -> float:
        """Seconds until some source is due (bounded to [min_refresh/10, 60])."""
        now = self._clock()
        waits = [60.0]
        for src in self._sources.values():
            earliest = src.attempted_at + self._min_refresh
            due = earliest if (src.wanted or not src.keys) else src.fetched_at + src.refresh
            waits.append(max(due, earliest) - now)
        return max(self._min_refresh / 10, min(waits))

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh in the background until `stop` is set; never blocks the event loop."""
        self._wake = asyncio.Event()
        while not stop.is_set():
            await asyncio.to_thread(self.refresh_due)
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=self.next_due(), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
