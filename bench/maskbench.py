"""Benchmark: masking a 64 KB JSON response, in-process, with every built-in detector on
(the issue's target: under 3 ms), by how much personal data the document holds."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from guardrail_authz.payload.mask import MaskOutcome, MaskPlan, mask_body
from guardrail_authz.policy.compile_mask import compile_mask
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.parse_mask import mask_spec
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.yamlsrc import load_documents

SIZE = 64 * 1024
KEY = b"bench-mask-key"
POLICY = """\
mask:
  fields:
    - {path: "$.results[*].customer.email", style: partial}
    - {path: "$..card.number", style: partial}
  detectors:
    - {detector: card, style: partial}
    - {detector: ssn, style: redact}
    - {detector: email, style: hash}
    - {detector: phone, style: partial}
    - {detector: iban, style: partial}
    - {detector: ipv4, style: redact}
    - {detector: ipv6, style: redact}
    - {detector: jwt, style: redact}
    - {detector: api_token, style: redact}
"""
_WORDS = (  # noqa: SIM905 - prose reads better than a list of words
    "order shipped to the blue house please leave it at the door thanks for the quick reply "
    "the refund was issued yesterday café Zoë 山田 size medium colour green returned item"
).split()
_CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005")


def plan() -> MaskPlan:
    """The bench policy's mask plan, parsed and compiled as the loader does."""
    sink = ErrorSink()
    (doc, _), *_ = load_documents(POLICY, "bench.yaml", sink)
    section = Reader(doc, "", "bench.yaml", sink).mapping("mask")
    compiled = compile_mask(mask_spec(section), "bench", sink) if section else None
    if sink or compiled is None:
        raise RuntimeError(f"bench policy does not compile: {sink.sorted()}")
    return compiled


def document(size: int = SIZE, *, contacts: float = 1.0, pii: float = 1.0) -> bytes:
    """An API page of customer orders of about `size` bytes: a share `contacts` of the
    customers have an email and a phone number; `pii` scales how many free-text notes also
    carry a card, SSN, IBAN, IP, phone or token (0: none, 1: half of them, 2: all)."""
    rng = random.Random(11)  # noqa: S311 - reproducible test data, not secrets
    results: list[dict[str, object]] = []
    page: dict[str, object] = {"page": 1, "next": "/orders?page=2", "results": results}
    while len(json.dumps(page)) < size:
        n = len(results)
        note = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(6, 16)))
        if rng.random() < 0.5 * pii:
            note += rng.choice((
                f" card {rng.choice(_CARDS)}", " ssn 123-45-6789", " from 10.1.2.3",
                " iban DE89 3704 0044 0532 0130 00", " key AKIAIOSFODNN7EXAMPLE",
                " via 2001:db8::7", " call (555) 234-5678",
            ))  # fmt: skip
        customer: dict[str, object] = {"name": "Dana O'Neil"}
        if rng.random() < contacts:
            customer["email"] = f"user{n}@example.com"
            customer["phone"] = f"+44 20 7946 {rng.randrange(10**4):04d}"
        results.append({
            "id": f"ord_{rng.randrange(10**9):09d}",
            "created": f"2025-0{rng.randrange(1, 10)}-1{rng.randrange(10)}T10:2{n % 10}:00Z",
            "status": rng.choice(("paid", "shipped", "refunded")),
            "customer": customer,
            "total": {"amount": rng.randrange(100, 99999) / 100, "currency": "EUR"},
            "items": [{"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randrange(1, 5)}],
            "note": note,
        })  # fmt: skip
    while len(json.dumps(page)) > size and results:
        results.pop()
    return json.dumps(page).encode()


def best_ms(call: Callable[[], object], budget: float = 1.0, least: int = 20) -> float:
    """Best wall time of `call` in milliseconds, over `budget` seconds (at least `least` runs)."""
    best = float("inf")
    deadline = time.perf_counter() + budget
    runs = 0
    while runs < least or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best * 1e3


def run() -> dict[str, float]:
    """Best milliseconds to mask one 64 KB body, by how much it holds to mask: `clean`
    nothing, `sparse` one customer in ten with an email and phone and a few notes with
    personal data, `contacts` every customer, `mixed` those and half the notes, `dense` every
    note; `gzip` is `mixed` gzip-compressed. With each, the values masked (`..._values`)."""
    p = plan()
    bodies = {
        "clean": (document(contacts=0.0, pii=0.0), ""),
        "sparse": (document(contacts=0.1, pii=0.1), ""),
        "contacts": (document(pii=0.0), ""),
        "mixed": (document(pii=1.0), ""),
        "dense": (document(pii=2.0), ""),
        "gzip": (gzip.compress(document(pii=1.0)), "gzip"),
    }
    out: dict[str, float] = {}
    for name, (body, encoding) in bodies.items():

        def call(body: bytes = body, encoding: str = encoding) -> MaskOutcome:
            return mask_body(
                p, body, content_type="application/json", content_encoding=encoding,
                principal="bench", roles=frozenset(), key=KEY,
            )  # fmt: skip

        out[f"{name}_ms"] = best_ms(call)
        out[f"{name}_values"] = float(sum(call().counts.values()))
    return out


def run_fresh() -> dict[str, float]:
    """run() in a new interpreter (with this one's CPU affinity), so that the figure does
    not depend on what the other benchmarks left in this process: once, after benchmark 3,
    masking the `mixed` body took 3.98 ms here and 2.88 ms in a fresh process. A process
    holding the 10,000-route set frozen out of the collector, as the server does after a
    load, masked within 1% of a fresh one; the larger slowdowns seen at the end of a full
    run came from the machine itself (see bench/run.py)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.maskbench", "--json"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    results: dict[str, float] = json.loads(out.stdout)
    return results


if __name__ == "__main__":
    if sys.argv[1:] == ["--json"]:
        print(json.dumps(run()))
    else:
        for label, value in run().items():
            print(f"{label:24s} {value:10.3f}")


TARGET_MS = 3.0  # the target for a 64 KB JSON response with all detectors on


def render(results: dict[str, float]) -> list[str]:
    """The report section of benchmark 9."""
    lines = [
        "### 9. Masking a 64 KB JSON response (ext_proc)",
        "",
        "- `python -m bench.maskbench` in a fresh process (on the load generator's CPU): "
        "`mask_body` with all 9 detectors and 2 field rules on one 64 KB page of customer "
        "records, best of at least 20 runs each; bodies differ in how much they hold to mask.",
        "",
        "| body | values masked | ms | target < 3 ms |",
        "|---|---|---|---|",
    ]
    for name in ("clean", "sparse", "contacts", "mixed", "dense", "gzip"):
        ms = results[f"{name}_ms"]
        met = "met" if ms < TARGET_MS else "**NOT met**"
        lines.append(f"| {name} | {results[f'{name}_values']:.0f} | {ms:.2f} | {met} |")
    return [*lines, ""]
