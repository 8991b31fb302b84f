"""End to end: policy changes under continuous traffic through real Envoy, ConfigMap-style."""

from __future__ import annotations

import http.client
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.envoystack import EnvoyStack
from tests.test_e2e_envoy import make_policies

pytestmark = pytest.mark.envoy

THREADS = 4
RATE_PER_THREAD = 75  # ~300 requests per second in all
DURATION = 6.0


class Traffic:
    """Keep-alive clients sending GET /mutate/x at a fixed rate until stopped."""

    def __init__(self, stack: EnvoyStack, duration: float = DURATION) -> None:
        self.stack = stack
        self.duration = duration  # a hard bound: the traffic stops when the block ends
        self.results: list[tuple[int, str, str]] = []  # status, x-policy-gen, decision id
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(THREADS)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports.listen_port, timeout=10)
        interval = 1 / RATE_PER_THREAD
        next_at = time.monotonic()
        deadline = time.monotonic() + self.duration + 5  # hard bound whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                r = self.stack.request("GET", "/mutate/x", conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports.listen_port)
                continue
            did = r.upstream_headers().get("x-guardrail-decision-id", "") if r.status == 200 else ""
            with self.lock:
                self.results.append((r.status, r.headers.get("x-policy-gen", ""), did))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)


def configmap(mount: Path, source: Path, stamp: int) -> None:
    """Publish source as the mount's new '..data' the way kubelet does (atomic rename)."""
    target = mount / f"..2026_11_21_00_00_{stamp:02d}.{stamp:09d}"
    shutil.copytree(source, target)
    link = mount / "..data_tmp"
    link.symlink_to(target.name)
    link.replace(mount / "..data")
    for f in target.iterdir():
        visible = mount / f.name
        if not visible.is_symlink():
            visible.symlink_to(Path("..data") / f.name)


def test_policy_changes_under_traffic(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    configmap(mount, make_policies(tmp_path / "g1", "1"), 1)
    with EnvoyStack(mount, tmp_path).start() as stack, Traffic(stack) as traffic:
        assert stack.server is not None
        time.sleep(1)
        configmap(mount, make_policies(tmp_path / "g2", "2"), 2)
        stack.server.wait_for("gen@2")
        time.sleep(0.8)
        broken = make_policies(tmp_path / "g3", "3")
        (broken / "gen.yaml").write_text((broken / "gen.yaml").read_text() + "  bogus: 1\n")
        configmap(mount, broken, 3)
        stack.server.wait_for("bogus")  # rejected: the last good snapshot keeps serving
        time.sleep(0.8)
        configmap(mount, make_policies(tmp_path / "g4", "4"), 4)
        stack.server.wait_for("gen@4")
        time.sleep(0.8)
        # An in-place rewrite of the live file (not a ConfigMap swap) is picked up too.
        live = (mount / "gen.yaml").resolve()
        tmp = live.with_suffix(".tmp")
        tmp.write_text(live.read_text().replace('"4"', '"5"'))
        tmp.replace(live)
        stack.server.wait_for("gen@5")
        time.sleep(1.0)
    results = traffic.results
    assert not traffic.errors, traffic.errors[:5]
    assert len(results) >= 0.6 * THREADS * RATE_PER_THREAD * DURATION
    statuses = {s for s, _, _ in results}
    assert statuses == {200}, statuses  # zero 5xx, zero denials
    gens = [g for _, g, _ in results]
    assert set(gens) == {"1", "2", "4", "5"}, sorted(set(gens))
    # Each request was decided by exactly one snapshot: the version in its audit record is
    # the one whose mutation (x-policy-gen) the client received. Never a mix.
    audit = stack.audit_records(*(did for _, _, did in results))
    for _, gen, did in results:
        assert f"gen@{gen}," in str(audit[did]["policy_version"]) + ",", (gen, audit[did])
