"""Live reload: watch the policy source, compile off the event loop, swap atomically; keep the
last versions for rollback, and hold a rolled-back version until the operator resumes."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from guardrail_authz.policy.compile import POLICY_SUFFIXES, key_files
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout.bundle import is_bundle, load_source
from guardrail_authz.rollout.history import (
    DEFAULT_KEEP,
    History,
    UnknownVersionError,
    VersionEntry,
)
from guardrail_authz.server.metrics import Metrics

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """Why the latest load was rejected."""

    at: float
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pin:
    """A rollback holding the active version until the operator resumes."""

    version: str
    by: str
    at: float


class SnapshotHolder:
    """Holds the live snapshot; readers take one reference per request, reload swaps it.

    Every version that compiles is kept (the last `keep`); a rollback activates a kept one and
    pins it, so later changes of the source are compiled and kept but not applied until
    `resume()`. Activation is serialised by a lock: the watcher compiles in a thread while
    admin calls run on the event loop."""

    def __init__(
        self,
        directory: Path,
        metrics: Metrics,
        keys: Sequence[Path] = (),
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.directory = directory  # a policy directory or a bundle (.tar.gz)
        self.keys = tuple(keys)  # ApiKeySet files or directories kept apart (--keys)
        self.metrics = metrics
        self.snapshot: PolicySnapshot | None = None
        self.last_failure: LoadFailure | None = None
        self.loaded_at: float | None = None
        self.history = History(keep)
        self.pin: Pin | None = None
        self.source_latest: VersionEntry | None = None  # newest version read from the source
        self.listeners: list[Callable[[PolicySnapshot], None]] = []  # called on every swap
        self._lock = threading.Lock()
        self._fingerprint: Fingerprint | None = None

    @property
    def source_kind(self) -> str:
        """'bundle' for a .tar.gz/.tgz source, else 'directory'."""
        return "bundle" if is_bundle(self.directory) else "directory"

    def fingerprint(self) -> Fingerprint:
        """What changes when any policy file changes, including a ConfigMap '..data' swap."""
        entries: list[tuple[str, int, int, int]] = []
        if is_bundle(self.directory):
            _stat_into(entries, self.directory)
        else:
            try:
                with os.scandir(self.directory) as it:
                    for e in it:
                        if e.name.startswith(".") or not e.name.endswith(POLICY_SUFFIXES):
                            continue
                        _stat_into(entries, Path(e.path), e.name)  # follows ConfigMap symlinks
            except OSError:
                return ()
        watched = self.snapshot.watched if self.snapshot is not None else ()
        for path in [*key_files(self.keys), *watched]:  # missing ones: watched until they appear
            _stat_into(entries, path)
        return tuple(sorted(entries))

    def load(self, trigger: str = "file change") -> bool:
        """Compile the source now; keep the result and activate it unless a rollback pins
        another version. A source that does not compile leaves everything as it was."""
        fingerprint = self.fingerprint()
        try:
            snapshot, info = load_source(self.directory, self.keys)
        except PolicyLoadError as exc:
            self._fingerprint = fingerprint
            self.last_failure = LoadFailure(time.time(), tuple(str(e) for e in exc.errors))
            self.metrics.policy_failed()
            keeping = self.snapshot.version if self.snapshot else "none"
            log.error(  # noqa: TRY400 - expected user errors, listed; no traceback wanted
                "policy load rejected; keeping %s:\n%s", keeping, exc.render()
            )
            return False
        except Exception:  # an engine bug must not kill the watcher
            self._fingerprint = fingerprint
            self.last_failure = LoadFailure(time.time(), ("internal error while compiling",))
            self.metrics.policy_failed()
            log.exception("policy load crashed; keeping the last good snapshot")
            return False
        self._fingerprint = fingerprint
        self.last_failure = None
        bundle = f"{info.bundle.name}@{info.bundle.version}" if info.bundle else ""
        with self._lock:
            entry = VersionEntry(snapshot, time.time(), str(self.directory), trigger, bundle)
            current = self.snapshot is not None and snapshot.version == self.snapshot.version
            if current:  # nothing new: the kept entry stays as it was
                self.source_latest = self.history.active
                self.metrics.policy_loaded(snapshot.version, snapshot.route_count)
                return True
            entry = self.history.add(entry)
            self.source_latest = entry
            if self.pin is not None:
                self.metrics.policy_held()
                log.warning(
                    "policy source now has %s; not applied: %s is pinned (%s) "
                    "(`guardrail-authz resume` to track the source again)",
                    snapshot.version,
                    self.pin.version,
                    self.pin.by,
                )
                return True
            self._activate(entry)
        return True

    def rollback(self, ref: str, by: str) -> tuple[VersionEntry, str]:
        """Activate a kept version (by version, hash or hash prefix; "" = the previous one)
        and pin it; returns it and the version it replaced. Raises UnknownVersionError."""
        with self._lock:
            if ref:
                target = self.history.find(ref)
            else:
                found = self.history.previous()
                if found is None:
                    raise UnknownVersionError("no previous version is kept to roll back to")
                target = found
            replaced = self.snapshot.version if self.snapshot is not None else "none"
            target.trigger = by
            self.pin = Pin(target.version, by, time.time())
            if not target.active:
                self._activate(target)
            self.metrics.rollback(True)
            log.warning("rolled back to %s (was %s), %s; pinned", target.version, replaced, by)
            return target, replaced

    def resume(self, by: str) -> tuple[VersionEntry | None, bool]:
        """Lift a rollback: compile the source now and activate it. Returns the active entry
        and whether the version changed; raises PolicyLoadError (still pinned) when the
        source does not compile."""
        snapshot, info = load_source(self.directory, self.keys)
        bundle = f"{info.bundle.name}@{info.bundle.version}" if info.bundle else ""
        with self._lock:
            before = self.snapshot.version if self.snapshot is not None else None
            entry = self.history.add(
                VersionEntry(snapshot, time.time(), str(self.directory), by, bundle)
            )
            self.source_latest = entry
            self.pin = None
            self.last_failure = None
            if not entry.active:
                self._activate(entry)
            self.metrics.rollback(False)
            log.warning("resumed tracking %s: %s active (%s)", self.directory, entry.version, by)
            return entry, entry.version != before

    def _activate(self, entry: VersionEntry) -> None:
        """Swap in a kept version (called with the lock held)."""
        snapshot = entry.snapshot
        watched = self.snapshot.watched if self.snapshot is not None else ()
        self.snapshot = snapshot  # the atomic swap: one reference assignment
        now = time.time()
        self.history.activate(entry, now)
        if snapshot.watched != watched:
            self._fingerprint = None  # watch the new files: one more load settles it
        self.loaded_at = now
        # The snapshot lives until the next swap: keep its (possibly millions of) objects out
        # of every garbage-collector pass, whose full passes would otherwise walk them while
        # Checks wait. Snapshots hold no reference cycles, so one dropped from the history is
        # still freed by reference counting (tests/test_reload_gc.py).
        gc.freeze()
        timings = " ".join(f"{k}={v * 1000:.1f}ms" for k, v in snapshot.stage_seconds.items())
        log.info(
            "policy %s active (%d routes; %s; %s)",
            snapshot.version,
            snapshot.route_count,
            entry.trigger,
            timings,
        )
        self.metrics.policy_loaded(snapshot.version, snapshot.route_count)
        for listener in self.listeners:
            listener(snapshot)

    def changed(self) -> bool:
        """True when the source differs from what was last loaded."""
        return self.fingerprint() != self._fingerprint


def _stat_into(entries: list[tuple[str, int, int, int]], path: Path, name: str = "") -> None:
    try:
        st = path.stat()
    except OSError:
        return
    entries.append((name or str(path), st.st_ino, st.st_size, st.st_mtime_ns))
