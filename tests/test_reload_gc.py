"""A loaded snapshot leaves the garbage collector's passes, and a replaced one is still freed."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_authz.server.metrics import Metrics
from guardrail_authz.server.reload import SnapshotHolder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_swapped_snapshots_are_frozen_and_old_ones_freed(tmp_path: Path, unfrozen: None) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "p")
    holder = SnapshotHolder(tmp_path / "p", Metrics())
    assert holder.load()
    first = holder.snapshot
    assert first is not None
    assert gc.get_freeze_count() > 0
    (tmp_path / "p" / "orders.yaml").write_text(
        (tmp_path / "p" / "orders.yaml").read_text().replace("version:", "version: '9'  #", 1)
    )
    before = gc.get_freeze_count()
    assert holder.load()
    assert holder.snapshot is not None
    assert holder.snapshot.version != first.version
    assert gc.get_freeze_count() > before
    # Frozen objects are never collected, so a replaced snapshot must need no collector:
    # with everything unfrozen, dropping one leaves no cyclic garbage behind.
    gc.unfreeze()
    gc.collect()
    del first
    assert gc.collect() == 0
