"""No secret of the test suite reaches a log: every log the session wrote is scanned, last.

Why last: pytest runs the files of tests/ in alphabetical order, and this file's name sorts
after every other test file (`test_zz_`), so the scan below sees what the whole session wrote
(the audit logs of every server started, rotated audit files, Envoy's log). Run on its own
it scans whatever the session wrote before it, possibly nothing.

What is scanned, by rule: the files under this session's base temporary directory
(`tmp_path_factory.getbasetemp()`, which holds every `tmp_path` of the session) whose name is
a log: `*.log`, `*.jsonl`, their rotated copies (`audit.log.1`), and any file with `stderr`
in its name (server output captured to a file). Nothing else: policy files, key sets,
request fixtures and bundles hold keys on purpose, and are not logs. The parent directory
(earlier sessions, and other sessions running at the same time) is not this session's and
is left alone.

What counts as a secret: the demo API keys (checked against policies/demo-keys.yaml, so a
new demo key must be added here), tokens of the demo issuer (its JOSE header, or the start
of its claims, as `guardrail_authz.demo.idp.mint` encodes them), any compact JWT (a header
and claims that are base64url JSON objects, and a signature), and the credentials the audit
tests put in requests (tests/test_audit.py and the chain tests' HMAC key).
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_authz.demo import idp
from tests.conftest import SHIPPED_POLICIES
from tests.test_audit_chain import KEY as CHAIN_TEST_KEY

DEMO_KEYS = ("demo-reader-key", "demo-admin-key")
FIXTURE_SECRETS = (
    b"s3cr3t",  # tests/test_audit.py: token, cookie, query and mutation values
    b"hunter2",  # a body's password
    b"abc.def.ghi",  # a bearer token
    b"eyJhbGciOi",  # the start of a JWT header ('{"alg":'), as test_audit.py sends one
    CHAIN_TEST_KEY,
)
_LOG_NAME = re.compile(r"\.(?:log|jsonl)(?:\.\d+)?$|stderr")
# A compact JWS: base64url header and claims that are JSON objects ('{"' is 'eyJ'), signature.
_ANY_JWT = rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def demo_token_marks() -> tuple[bytes, bytes]:
    """What every demo token holds: its JOSE header segment, and the start of its claims
    (the issuer comes first), taken from two tokens minted with different claims."""
    one = idp.mint("marks-a", scope="x", now=1_000_000)
    two = idp.mint("marks-b", ttl=60, now=2_000_000)
    header = one.split(".")[0]
    assert header == two.split(".")[0]
    claims = _common_prefix(one.split(".")[1], two.split(".")[1])
    assert len(claims) >= 40  # '{"iss":"https://demo-idp...' encodes the same in both
    return header.encode(), claims.encode()


def secret_pattern() -> re.Pattern[bytes]:
    """One regex for every secret listed in this module's docstring."""
    literals = [k.encode() for k in DEMO_KEYS] + list(FIXTURE_SECRETS) + list(demo_token_marks())
    return re.compile(b"|".join([*(re.escape(s) for s in literals), _ANY_JWT]))


def log_files(root: Path) -> Iterator[Path]:
    """The files under `root` that the rule scans (module docstring)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and _LOG_NAME.search(path.name):
            yield path


def find_secrets(root: Path, pattern: re.Pattern[bytes]) -> list[str]:
    """'file:line: what' for each line of a scanned file that holds a secret."""
    found = []
    for path in log_files(root):
        with path.open("rb") as stream:
            for number, line in enumerate(stream, 1):
                m = pattern.search(line)
                if m is not None:
                    found.append(f"{path}:{number}: {m.group().decode(errors='replace')[:40]}")
    return found


def test_the_demo_key_list_covers_policies_demo_keys() -> None:
    text = (SHIPPED_POLICIES / "demo-keys.yaml").read_text()
    shipped = set(re.findall(r"sha256:\s*([0-9a-f]{64})", text))
    assert shipped == {hashlib.sha256(k.encode()).hexdigest() for k in DEMO_KEYS}


def test_the_scan_finds_a_planted_secret_in_logs_only() -> None:
    pattern = secret_pattern()
    token = idp.mint("planted")
    # Outside the session's temporary directory, so the session scan below never sees it.
    with tempfile.TemporaryDirectory(prefix="planted-secrets-") as tmp:
        root = Path(tmp)
        (root / "run").mkdir()
        (root / "run" / "audit.log").write_text('{"a":1}\n{"a":2}\n{"k":"demo-admin-key"}\n')
        (root / "run" / "audit.log.2").write_text('{"cookie":"session=s3cr3t"}\n')
        (root / "run" / "server-stderr.txt").write_text(f"oops Bearer {token}\n")
        (root / "run" / "events.jsonl").write_text('{"header":"[redacted]"}\n')
        (root / "run" / "keys.yaml").write_text("key: demo-reader-key\n")  # not a log
        (root / "run" / "request.json").write_text(f'{{"authorization":"{token}"}}')
        found = find_secrets(root, pattern)
    assert [f.split(": ", 1)[0].rsplit("/", 1)[1] for f in found] == [
        "audit.log:3",
        "audit.log.2:1",
        "server-stderr.txt:1",
    ]
    assert found[0].endswith(": demo-admin-key")

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    header, claims = b64('{"typ":"JWT","alg":"RS256"}'), b64('{"sub":"someone"}')
    other = f"{header}.{claims}.{'s' * 43}"
    assert pattern.search(f"token={other}&x=1".encode())  # any JWT at all, by its shape
    assert pattern.search(b'"x-api-key":"sha256:cc551f29bff81915d8d2"') is None  # a key's hash
    assert pattern.search(b'"authorization":"[redacted]"') is None


def test_no_log_of_this_session_holds_a_secret(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs after every other test file (see the module docstring)."""
    found = find_secrets(tmp_path_factory.getbasetemp(), secret_pattern())
    assert not found, "secrets in logs:\n" + "\n".join(found)
