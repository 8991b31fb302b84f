"""API keys kept apart from the policies (--keys, e.g. a mounted Secret), reloaded live."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyLoadError
from tests.serverproc import ServerProcess, check_request

POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: partners-api}
spec:
  apiKeys: {keySets: [partners]}
  routes:
    - name: r
      match: {paths: [/partner]}
      rules: [{name: partners, effect: allow, when: {authenticated: true}}]
"""
KEY = "partner-key-1"


def _keys(extra: str = "") -> str:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    return (
        "apiVersion: guardrail-authz/v1\nkind: ApiKeySet\nmetadata: {name: partners}\n"
        f"spec:\n  keys:\n    - {{sha256: {digest}, principal: acme{extra}}}\n"
    )


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    policies, secret = tmp_path / "policies", tmp_path / "secret"
    policies.mkdir()
    secret.mkdir()
    (policies / "p.yaml").write_text(POLICY, encoding="utf-8")
    (secret / "keys.yaml").write_text(_keys(), encoding="utf-8")
    return policies, secret


def test_key_sets_from_another_path(tmp_path: Path) -> None:
    policies, secret = _setup(tmp_path)
    snapshot = load_directory(policies, [secret])
    assert str(secret / "keys.yaml") in snapshot.files
    with pytest.raises(PolicyLoadError) as info:
        load_directory(policies)  # without the keys the reference is unknown
    assert [e.code for e in info.value.errors] == ["ref.unknown"]


def test_only_key_sets_may_come_from_keys(tmp_path: Path) -> None:
    policies, secret = _setup(tmp_path)
    (secret / "sneaky.yaml").write_text(POLICY.replace("partners-api", "other"))
    with pytest.raises(PolicyLoadError) as info:
        load_directory(policies, [secret, tmp_path / "absent"])
    found = {(e.code, Path(e.file).name) for e in info.value.errors}
    assert found == {("keys.kind", "sneaky.yaml"), ("keys.missing", "absent")}


@pytest.mark.integration
def test_revoking_a_key_in_the_secret_takes_effect_live(tmp_path: Path) -> None:
    policies, secret = _setup(tmp_path)
    request = check_request("GET", "/partner", headers={"x-api-key": KEY})
    with ServerProcess(policies, tmp_path / "audit.log", extra=["--keys", str(secret)]) as server:
        assert server.check(request).HasField("ok_response")
        (secret / "keys.yaml").write_text(_keys(", revoked: true"), encoding="utf-8")
        deadline = time.monotonic() + 10
        while (resp := server.check(request)).HasField("ok_response"):
            assert time.monotonic() < deadline, "the revocation was never loaded"
            time.sleep(0.05)
        assert json.loads(resp.denied_response.body)["reason"] == "api_key_revoked"
