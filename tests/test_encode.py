"""The hand-rolled allow encoding is byte-identical to the generated protobuf classes'."""

from __future__ import annotations

import random

import pytest

from guardrail_authz.engine.decision import Decision
from guardrail_authz.server.encode import encode_allow
from guardrail_authz.server.response import to_check_response
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse

MODES = ("overwrite", "append", "if_absent")


def _text(rng: random.Random) -> str:
    size = rng.choice([0, 1, 5, 127, 128, 300, 20_000])
    alphabet = "abcXYZ-_/:,é€😀 \t"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _decision(rng: random.Random) -> Decision:
    d = Decision(True, 200, "allowed", f"id-{rng.randrange(10**9)}", "v")
    for _ in range(rng.randrange(6)):
        d.upstream_headers_set.append((f"x-{_text(rng)[:20] or 'h'}", _text(rng), "overwrite"))
    d.upstream_headers_set.append(("x-guardrail-decision-id", d.decision_id, "overwrite"))
    d.upstream_headers_remove.extend(f"x-r{i}" for i in range(rng.randrange(4)))
    for _ in range(rng.randrange(4)):
        d.response_headers_add.append(("x-resp", _text(rng), rng.choice(MODES)))
    d.query_set.extend((_text(rng)[:10] or "q", _text(rng)) for _ in range(rng.randrange(3)))
    d.query_remove.extend(f"q{i}" for i in range(rng.randrange(3)))
    return d


@pytest.mark.parametrize("seed", range(200))
def test_random_allow_decisions_encode_identically(seed: int) -> None:
    d = _decision(random.Random(seed))
    fast = encode_allow(d)
    assert fast == to_check_response(d).SerializeToString()
    parsed = CheckResponse.FromString(fast)
    assert parsed.WhichOneof("http_response") == "ok_response"
    assert [h.header.key for h in parsed.ok_response.headers] == [
        n for n, _, _ in d.upstream_headers_set
    ]


def test_empty_allow() -> None:
    d = Decision(True, 200, "allowed", "id", "v")
    assert encode_allow(d) == to_check_response(d).SerializeToString()
