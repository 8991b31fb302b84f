"""`docker compose up` behaves like `make run` (needs a Docker engine; skipped without one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.docker


def _docker_answers() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if out.returncode != 0:
        return "no Docker engine answers: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    return None


@pytest.fixture(scope="module")
def compose() -> Iterator[None]:
    reason = _docker_answers()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.compose import DockerCompose

    stack = DockerCompose(str(REPO), compose_file_name="compose.yaml", build=True)
    with stack:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:8080/public/ping", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        yield


def _get(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:8080{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - fixed loopback URL
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.usefixtures("compose")
def test_compose_stack_behaves_like_make_run() -> None:
    assert _get("/public/ping")[0] == 200
    status, body = _get("/api/orders/42")
    assert status == 401
    assert json.loads(body)["reason"] == "no_identity"
    status, body = _get("/api/orders/42", {"x-api-key": "demo-reader-key"})
    assert status == 200
    seen = json.loads(body)["headers"]
    assert seen["x-guardrail-principal"] == "reader"
    assert "x-api-key" not in seen
