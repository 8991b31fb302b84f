"""Live reload: watch the policy directory, compile off the event loop, swap atomically."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from guardrail_authz.policy.compile import POLICY_SUFFIXES, key_files, load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.server.metrics import Metrics

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """Why the latest load was rejected."""

    at: float
    errors: tuple[str, ...]


class SnapshotHolder:
    """Holds the live snapshot; readers take one reference per request, reload swaps it."""

    def __init__(self, directory: Path, metrics: Metrics, keys: Sequence[Path] = ()) -> None:
        self.directory = directory
        self.keys = tuple(keys)  # ApiKeySet files or directories kept apart (--keys)
        self.metrics = metrics
        self.snapshot: PolicySnapshot | None = None
        self.last_failure: LoadFailure | None = None
        self.loaded_at: float | None = None
        self._fingerprint: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        """What changes when any policy file changes, including a ConfigMap '..data' swap."""
        entries: list[tuple[str, int, int, int]] = []
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    if e.name.startswith(".") or not e.name.endswith(POLICY_SUFFIXES):
                        continue
                    try:
                        st = Path(e.path).stat()  # follows the ConfigMap symlinks
                    except OSError:
                        continue
                    entries.append((e.name, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            return ()
        watched = self.snapshot.watched if self.snapshot is not None else ()
        for path in [*key_files(self.keys), *watched]:  # missing ones: watched until they appear
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))

    def load(self) -> bool:
        """Compile the directory now; swap in the result or keep the last good snapshot."""
        fingerprint = self.fingerprint()
        try:
            snapshot = load_directory(self.directory, self.keys)
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
        if self.snapshot is None or snapshot.version != self.snapshot.version:
            watched = self.snapshot.watched if self.snapshot is not None else ()
            self.snapshot = snapshot  # the atomic swap: one reference assignment
            if snapshot.watched != watched:
                self._fingerprint = None  # watch the new files: one more load settles it
            self.loaded_at = time.time()
            # The snapshot lives until the next swap: keep its (possibly millions of) objects
            # out of every garbage-collector pass, whose full passes would otherwise walk them
            # while Checks wait. Snapshots hold no reference cycles, so the one replaced here is
            # still freed by reference counting (tests/test_reload_gc.py).
            gc.freeze()
            timings = " ".join(f"{k}={v * 1000:.1f}ms" for k, v in snapshot.stage_seconds.items())
            log.info(
                "policy %s active (%d routes; %s)", snapshot.version, snapshot.route_count, timings
            )
        self.metrics.policy_loaded(snapshot.version, snapshot.route_count)
        return True

    def changed(self) -> bool:
        """True when the directory differs from what was last loaded."""
        return self.fingerprint() != self._fingerprint
