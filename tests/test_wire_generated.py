"""The committed generated wire modules equal a fresh run of guardrail_authz.wire.generate."""

from importlib import metadata
from pathlib import Path

import pytest

from guardrail_authz.wire import generate


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """One regeneration into a temporary directory: (directory, files written)."""
    out_dir = tmp_path_factory.mktemp("generated")
    return out_dir, generate.generate(out_dir)


def _tree(root: Path, tops: set[Path]) -> set[Path]:
    """Files under the given top-level generated directories of root, relative to root."""
    return {
        path.relative_to(root)
        for top in tops
        for path in (root / top).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _generated_tops(files: list[Path]) -> set[Path]:
    """The first generated directory of each file, e.g. guardrail_authz/wire/envoy."""
    return {Path(*file.parts[: generate.OWNED_DEPTH + 1]) for file in files}


def test_committed_generated_files_are_up_to_date(fresh: tuple[Path, list[Path]]) -> None:
    """Regenerating reproduces every committed file byte for byte, and nothing else is there."""
    out_dir, files = fresh
    assert files, "no .proto files found under proto/"
    committed = _tree(generate.REPO_ROOT, _generated_tops(files))
    missing = sorted(str(path) for path in set(files) - committed)
    extra = sorted(str(path) for path in committed - set(files))
    differ = sorted(
        str(path)
        for path in set(files) & committed
        if (out_dir / path).read_bytes() != (generate.REPO_ROOT / path).read_bytes()
    )
    versions = {
        name: metadata.version(name) for name in ("grpcio-tools", "mypy-protobuf", "protobuf")
    }
    hint = f"generated wire modules are stale, run `make proto` ({versions})"
    assert not missing, f"{hint}; not committed: {missing}"
    assert not extra, f"{hint}; committed but no longer generated: {extra}"
    assert not differ, f"{hint}; content differs: {differ}"


def test_generation_is_deterministic(fresh: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """A second run produces the same file list and the same bytes."""
    first_dir, first = fresh
    second = generate.generate(tmp_path)
    assert first == second
    differ = [
        str(path)
        for path in first
        if (first_dir / path).read_bytes() != (tmp_path / path).read_bytes()
    ]
    assert not differ, f"non-deterministic output: {differ}"


def test_every_generated_package_has_an_init(fresh: tuple[Path, list[Path]]) -> None:
    """Each generated directory is a regular package, so imports never rely on namespaces."""
    _, files = fresh
    directories = {
        Path(*file.parts[:depth])
        for file in files
        for depth in range(generate.OWNED_DEPTH + 1, len(file.parts))
    }
    lacking = sorted(str(d) for d in directories if d / "__init__.py" not in set(files))
    assert not lacking, f"generated directories without __init__.py: {lacking}"
