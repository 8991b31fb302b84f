"""The versions a server keeps: each compiled snapshot with where, when and why it loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from guardrail_authz.policy.snapshot import PolicySnapshot

DEFAULT_KEEP = 10


class UnknownVersionError(LookupError):
    """A rollback target that names no kept version (or more than one)."""


@dataclass(slots=True)
class VersionEntry:
    """One kept version: the snapshot and its provenance."""

    snapshot: PolicySnapshot
    loaded_at: float
    source: str  # the directory or bundle read
    trigger: str  # startup, file change, rollback by ..., resume by ...
    bundle: str = ""  # name@version from a bundle's manifest
    activated_at: float = 0.0  # last activation; 0 when never active
    active: bool = False

    @property
    def version(self) -> str:
        """The snapshot's version string (name@version,...#hash)."""
        return self.snapshot.version


@dataclass(slots=True)
class History:
    """Kept versions, oldest first, at most `keep` (the active one is never dropped)."""

    keep: int = DEFAULT_KEEP
    entries: list[VersionEntry] = field(default_factory=list)

    def add(self, entry: VersionEntry) -> VersionEntry:
        """Keep a freshly loaded version; one entry per version (a re-load refreshes it)."""
        for old in self.entries:
            if old.version == entry.version:
                self.entries.remove(old)
                entry.activated_at, entry.active = old.activated_at, old.active
                break
        self.entries.append(entry)
        self._trim()
        return entry

    def activate(self, entry: VersionEntry, at: float) -> None:
        """Mark `entry` as the active version."""
        for other in self.entries:
            other.active = False
        entry.active = True
        entry.activated_at = at

    @property
    def active(self) -> VersionEntry | None:
        """The active version, if any."""
        return next((e for e in self.entries if e.active), None)

    def previous(self) -> VersionEntry | None:
        """The version active before the current one (most recently activated other entry)."""
        others = [e for e in self.entries if not e.active and e.activated_at]
        return max(others, key=lambda e: e.activated_at, default=None)

    def find(self, ref: str) -> VersionEntry:
        """A kept version by full version, content hash or unique hash prefix (4+ chars)."""
        for entry in self.entries:
            if ref in (entry.version, entry.snapshot.content_hash):
                return entry
        found = (
            [e for e in self.entries if e.snapshot.content_hash.startswith(ref)]
            if len(ref) >= 4
            else []
        )
        if len(found) == 1:
            return found[0]
        kept = ", ".join(e.version for e in reversed(self.entries)) or "none"
        what = "more than one kept version matches" if found else "no kept version matches"
        raise UnknownVersionError(f"{what} {ref!r} (kept: {kept})")

    def newest_first(self) -> list[VersionEntry]:
        """Kept versions, the most recently loaded first."""
        return list(reversed(self.entries))

    def _trim(self) -> None:
        while len(self.entries) > max(self.keep, 1):
            oldest = next((e for e in self.entries if not e.active), None)
            if oldest is None:
                return
            self.entries.remove(oldest)
