"""Kept versions, rollback, pinning and resume in the snapshot holder."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_authz.policy.errors import PolicyLoadError
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.rollout.bundle import build_bundle
from guardrail_authz.rollout.history import History, UnknownVersionError
from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: gen, version: "GEN"}
spec:
  routes:
    - name: r
      match: {paths: [/x]}
      rules: [{name: anyone, effect: allow}]
"""


def _write(directory: Path, gen: str, *, broken: bool = False) -> None:
    directory.mkdir(exist_ok=True)
    text = POLICY.replace("GEN", gen) + ("  bogus: 1\n" if broken else "")
    (directory / "gen.yaml").write_text(text)


def _holder(tmp_path: Path, keep: int = 10) -> tuple[SnapshotHolder, Path]:
    directory = tmp_path / "p"
    _write(directory, "1")
    holder = SnapshotHolder(directory, Metrics(), keep=keep)
    assert holder.load("startup")
    return holder, directory


def _active(holder: SnapshotHolder) -> str:
    assert holder.snapshot is not None
    return holder.snapshot.version.split("#")[0]


def test_every_compiled_version_is_kept_with_its_provenance(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    _write(directory, "2")
    assert holder.load()
    entries = holder.history.newest_first()
    assert [e.version.split("#")[0] for e in entries] == ["gen@2", "gen@1"]
    assert [e.trigger for e in entries] == ["file change", "startup"]
    assert [e.active for e in entries] == [True, False]
    assert entries[0].source == str(directory)
    assert entries[0].loaded_at >= entries[1].loaded_at > 0
    assert entries[0].snapshot.files == ("gen.yaml",)


def test_rollback_to_previous_pins_until_resume(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    seen: list[str] = []
    holder.listeners.append(lambda snap: seen.append(snap.version.split("#")[0]))
    _write(directory, "2")
    holder.load()
    entry, replaced = holder.rollback("", "rollback by test: bad change")
    assert _active(holder) == "gen@1"
    assert replaced.startswith("gen@2#")
    assert holder.pin is not None
    assert holder.pin.by == "rollback by test: bad change"
    assert entry.trigger == "rollback by test: bad change"
    # A later change on disk is compiled and kept, but does not undo the rollback.
    _write(directory, "3")
    assert holder.changed()
    assert holder.load()
    assert _active(holder) == "gen@1"
    assert holder.source_latest is not None
    assert holder.source_latest.version.startswith("gen@3#")
    assert b'guardrail_policy_reloads_total{result="held"} 1.0' in holder.metrics.render()
    assert b"guardrail_policy_pinned 1.0" in holder.metrics.render()
    # Resume: the source's version becomes active at once.
    active, changed = holder.resume("resume by test")
    assert changed
    assert active is not None
    assert _active(holder) == "gen@3"
    assert holder.pin is None
    assert b"guardrail_policy_pinned 0.0" in holder.metrics.render()
    assert seen == ["gen@2", "gen@1", "gen@3"]


def test_rollback_by_version_hash_and_prefix(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    first = holder.history.newest_first()[0].snapshot
    for gen in ("2", "3"):
        _write(directory, gen)
        holder.load()
    holder.rollback(first.version, "by version")
    assert _active(holder) == "gen@1"
    holder.rollback(holder.history.newest_first()[0].snapshot.content_hash, "by hash")
    assert _active(holder) == "gen@3"
    holder.rollback(first.content_hash[:6], "by prefix")
    assert _active(holder) == "gen@1"
    with pytest.raises(UnknownVersionError, match="no kept version matches 'nope'"):
        holder.rollback("nope", "x")
    assert _active(holder) == "gen@1"  # a failed rollback changes nothing


def test_rollback_without_a_previous_version_is_refused(tmp_path: Path) -> None:
    holder, _ = _holder(tmp_path)
    with pytest.raises(UnknownVersionError, match="no previous version"):
        holder.rollback("", "x")
    assert holder.pin is None


def test_resume_with_a_broken_source_stays_pinned(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    _write(directory, "2")
    holder.load()
    holder.rollback("", "x")
    _write(directory, "3", broken=True)
    assert not holder.load()  # rejected, reported in last_failure
    assert holder.last_failure is not None
    with pytest.raises(PolicyLoadError, match="bogus"):
        holder.resume("resume by test")
    assert holder.pin is not None
    assert _active(holder) == "gen@1"


def test_source_returning_to_the_pinned_version_still_needs_resume(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    _write(directory, "2")
    holder.load()
    holder.rollback("", "x")
    _write(directory, "1")
    holder.load()
    assert holder.pin is not None  # only the operator lifts a rollback
    _, changed = holder.resume("r")
    assert not changed
    assert _active(holder) == "gen@1"


def test_history_keeps_the_last_n_and_never_drops_the_active(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path, keep=3)
    for gen in range(2, 7):
        _write(directory, str(gen))
        holder.load()
    kept = [e.version.split("#")[0] for e in holder.history.newest_first()]
    assert kept == ["gen@6", "gen@5", "gen@4"]
    holder.rollback("", "x")  # back to gen@5
    for gen in range(7, 10):
        _write(directory, str(gen))
        holder.load()  # held: the pinned gen@5 stays kept however many arrive
    kept = [e.version.split("#")[0] for e in holder.history.newest_first()]
    assert "gen@5" in kept
    assert len(kept) == 3
    assert _active(holder) == "gen@5"


def test_history_find_refuses_ambiguous_and_short_prefixes() -> None:
    history = History(keep=5)
    assert history.previous() is None
    with pytest.raises(UnknownVersionError, match="kept: none"):
        history.find("abc")


def test_a_bundle_source_is_loaded_and_watched(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    _write(directory, "1")
    archive = tmp_path / "policies.tar.gz"
    build_bundle(directory, archive, name="shop", version="1")
    holder = SnapshotHolder(archive, Metrics())
    assert holder.source_kind == "bundle"
    assert holder.load("startup")
    assert _active(holder) == "gen@1"
    assert holder.history.newest_first()[0].bundle == "shop@1"
    assert not holder.changed()
    _write(directory, "2")
    build_bundle(directory, tmp_path / "next.tar.gz", name="shop", version="2")
    (tmp_path / "next.tar.gz").replace(archive)
    assert holder.changed()
    assert holder.load()
    assert _active(holder) == "gen@2"
    assert holder.history.newest_first()[0].bundle == "shop@2"


def test_listeners_see_each_activated_snapshot_once(tmp_path: Path) -> None:
    holder, directory = _holder(tmp_path)
    seen: list[PolicySnapshot] = []
    holder.listeners.append(seen.append)
    assert holder.load()  # unchanged: no activation
    assert seen == []
    _write(directory, "2")
    holder.load()
    assert [s.version.split("#")[0] for s in seen] == ["gen@2"]
