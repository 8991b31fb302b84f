"""`make run`'s stack launcher: a port already in use is a clear message, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from guardrail_authz.devstack import PORTS


def test_port_in_use_is_reported_clearly() -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", PORTS["guardrail-authz ops HTTP"]))
        except OSError:
            pytest.skip("port 9192 is taken by something else on this machine")
        s.listen()
        out = subprocess.run(
            [sys.executable, "-m", "guardrail_authz.devstack"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 2
    assert "already in use: guardrail-authz ops HTTP port 9192" in out.stderr
    assert "Traceback" not in out.stderr
