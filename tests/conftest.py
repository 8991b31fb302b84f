"""Shared fixtures: the shipped policy directory and a copy tests may rewrite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

REPO = Path(__file__).resolve().parent.parent
SHIPPED_POLICIES = REPO / "policies"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policies."""
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, target)
    return target


@pytest.fixture
def server(policy_dir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """The real server on free ports, serving a copy of the shipped policies."""
    with ServerProcess(policy_dir, tmp_path / "audit.log") as proc:
        yield proc
