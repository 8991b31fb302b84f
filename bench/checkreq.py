"""The Envoy-like CheckRequests the benchmarks send, and their gRPC length-prefixed framing."""

from __future__ import annotations

import struct

from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckRequest

CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"
READER_KEY = "demo-reader-key"  # the shipped demo key (policies/demo-keys.yaml)
_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# Roughly what an Istio ingress gateway sends for a browser-ish API call.
BASE_HEADERS: dict[str, str] = {
    ":authority": "api.shop.example.com",
    ":method": "GET",
    ":path": "/api/orders/42",
    ":scheme": "https",
    "accept": "application/json, text/plain, */*",
    "accept-encoding": "gzip, deflate, br",
    "accept-language": "en-GB,en;q=0.9,fr;q=0.8",
    "user-agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    ),
    "x-api-key": READER_KEY,
    "x-request-id": "6f1c1a2e-7a4b-4f8e-9d2c-3b5a7e9f0c11",
    "x-forwarded-proto": "https",
    "x-forwarded-for": "203.0.113.24, 10.0.0.5",
    "x-envoy-external-address": "203.0.113.24",
    "x-envoy-attempt-count": "1",
    "x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736",
    "x-b3-spanid": "00f067aa0ba902b7",
    "x-b3-sampled": "1",
    "traceparent": _TRACE,
    "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "referer": "https://shop.example.com/account/orders",
    "origin": "https://shop.example.com",
    "sec-fetch-site": "same-site",
    "sec-fetch-mode": "cors",
    "x-client-version": "web-2024.05.3",
    "x-guardrail-principal": "spoofed-by-client",
}


def build_check_request(method: str, path: str, headers: dict[str, str]) -> CheckRequest:
    """A CheckRequest shaped like the ones Envoy's ext_authz filter sends (1-3 KB)."""
    req = CheckRequest()
    attrs = req.attributes
    src = attrs.source
    src.address.socket_address.address = "10.0.0.5"
    src.address.socket_address.port_value = 53422
    src.principal = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
    dst = attrs.destination
    dst.address.socket_address.address = "10.0.1.7"
    dst.address.socket_address.port_value = 8080
    dst.principal = "spiffe://cluster.local/ns/shop/sa/orders"
    attrs.request.time.seconds = 1_717_171_717
    attrs.request.time.nanos = 123_000_000
    http = attrs.request.http
    http.id = "17598764535183954223"
    http.method = method
    http.path = path
    http.host = headers[":authority"]
    http.scheme = "https"
    http.protocol = "HTTP/2"
    http.size = 0
    http.headers.update(headers | {":method": method, ":path": path})
    attrs.context_extensions["virtual_host"] = "shop-api"
    attrs.tls_session.sni = "api.shop.example.com"
    return req


def allow_request() -> bytes:
    """GET /api/orders/42 with the demo reader key: the shipped policies allow it."""
    return build_check_request("GET", "/api/orders/42", BASE_HEADERS).SerializeToString()


def deny_request() -> bytes:
    """DELETE /api/orders/42 with the reader key: the shipped policies deny it (403)."""
    return build_check_request("DELETE", "/api/orders/42", BASE_HEADERS).SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """The 5-byte gRPC prefix (uncompressed flag, big-endian length) followed by the message."""
    return struct.pack(">BI", 0, len(message)) + message
