"""Which CPU each process of the Envoy benchmark runs on, and how busy it kept those CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, Cores, Server

CHOICES = ("split", "shared")  # the first is the default
STEAL = "steal cpu"  # key prefix of the share of a CPU the hypervisor gave to other guests
OTHER = "other cpu"  # key prefix of the share of a CPU busy outside the measured processes


@dataclass(frozen=True, slots=True)
class Placement:
    """CPU per role (None = not pinned): Envoy, the demo upstream, the Check servers, h2load."""

    name: str
    envoy: int | None
    upstream: int | None
    authz: int | None
    load: int | None

    @classmethod
    def pick(cls, name: str, cores: Cores) -> Placement:
        """split: the Check servers alone on one CPU; shared: all servers on one, h2load alone."""
        if name not in CHOICES:
            raise BenchError(f"unknown placement {name!r}: choose one of {', '.join(CHOICES)}")
        server, client = cores.server, cores.client
        if name == "shared":
            return cls(name, server, server, server, client)
        return cls(name, client, client, server, client)

    def pin(self, core: int | None) -> list[str]:
        """`taskset -c N` for a role's CPU, nothing when unpinned."""
        return [] if core is None else ["taskset", "-c", str(core)]

    def describe(self) -> str:
        """Human-readable placement, for the report."""
        if self.envoy is None:
            return "not pinned (fewer than 2 CPUs or no taskset)"
        if self.name == "shared":
            return (
                f"Envoy, the Check server and the demo upstream share CPU {self.envoy}; "
                f"h2load alone on CPU {self.load}"
            )
        return (
            f"the Check server (no-op or guardrail-authz) alone on CPU {self.authz}; Envoy, "
            f"the demo upstream and h2load share CPU {self.envoy}"
        )


def _core_seconds(core: int) -> tuple[float, float, float]:
    """(busy, steal, total) seconds of one CPU so far; busy excludes idle, iowait and steal."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name == f"cpu{core}":
            v = [int(x) / os.sysconf("SC_CLK_TCK") for x in fields]
            total = sum(v[:8])
            return total - v[3] - v[4] - v[7], v[7], total
    raise BenchError(f"cpu{core} missing from /proc/stat")


class CpuMeter:
    """CPU used by groups of server processes and by their CPUs, between start() and shares()."""

    def __init__(self, groups: dict[str, tuple[int | None, list[Server]]]) -> None:
        self.groups = groups
        self.servers = [s for _, group in groups.values() for s in group]
        self.cores = sorted({c for c, _ in groups.values() if c is not None})
        self._procs: dict[str, float] = {}
        self._cores: dict[int, tuple[float, float, float]] = {}

    def _grouped(self) -> dict[str, float]:
        return {k: sum(s.cpu_seconds() for s in group) for k, (_, group) in self.groups.items()}

    def start(self) -> None:
        """Take the first reading."""
        self._procs = self._grouped()
        self._cores = {c: _core_seconds(c) for c in self.cores}

    def shares(self, wall: float) -> dict[str, float]:
        """Share of one CPU per group; per CPU, what else kept it busy and what the host stole."""
        now = self._grouped()
        out = {k: (now[k] - self._procs[k]) / wall for k in now}
        for core in self.cores:
            (busy0, steal0, total0), (busy, steal, total) = self._cores[core], _core_seconds(core)
            ours = sum(out[k] for k, (c, _) in self.groups.items() if c == core)
            out[f"{OTHER}{core}"] = max(0.0, (busy - busy0) / (total - total0) - ours)
            out[f"{STEAL}{core}"] = (steal - steal0) / (total - total0)
        return out
