"""view_from_check: Envoy's CheckRequest read as a RequestView, spoofed guardrail headers found
in the request's bytes (the conformance corpus checks whole decisions both ways)."""

from __future__ import annotations

import pytest

from guardrail_authz.server.servicer import view_from_check
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckRequest


def _view(headers: dict[str, str], *, with_payload: bool = True) -> tuple[str, ...] | None:
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/x", "h"
    for name, value in headers.items():
        http.headers[name] = value
    payload = req.SerializeToString()
    view = view_from_check(CheckRequest.FromString(payload), payload if with_payload else None)
    return view.guardrail_names


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        ({"accept": "*/*"}, ()),
        ({"x-guardrail-principal": "mallory"}, ("x-guardrail-principal",)),
        (
            {"x-guardrail-a": "1", "accept": "x", "x-guardrail-b": ""},
            ("x-guardrail-a", "x-guardrail-b"),
        ),
        ({"x-guardrail-": "bare prefix"}, ("x-guardrail-",)),
    ],
)
def test_names_found_in_the_bytes(headers: dict[str, str], names: tuple[str, ...]) -> None:
    found = _view(headers)
    assert found is not None
    assert sorted(found) == sorted(names)


@pytest.mark.parametrize(
    "headers",
    [
        {"referer": "https://x/?h=x-guardrail-principal"},  # the prefix inside a value
        {"x-guardrail-a": "1", "x-note": "\n\x0dx-guardrail-a"},  # a value that mimics a key
        {"x-guardrail-" + "n" * 200: "long name: two-byte length"},
    ],
)
def test_unexplained_occurrences_leave_the_scan_to_evaluation(headers: dict[str, str]) -> None:
    assert _view(headers) is None


def test_without_the_payload_evaluation_scans() -> None:
    assert _view({"x-guardrail-a": "1"}, with_payload=False) is None
