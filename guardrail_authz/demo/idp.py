"""The local stack's demo identity provider: one Ed25519 signing key whose JWKS is served on
127.0.0.1:8082, and `guardrail-authz demo-token` to mint tokens with it.

DEMO ONLY. The private key is derived from a seed written below, so anyone can mint these
tokens: never trust this issuer outside the local stack.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ISSUER = "https://demo-idp.guardrail-authz.local"
AUDIENCE = "guardrail-demo"
KID = "demo-1"
PORT = 8082
JWKS_PATH = "/jwks.json"
_SEED = b"guardrail-authz demo issuer: a public seed, never use outside the local stack"


def private_key() -> Ed25519PrivateKey:
    """The demo signing key (the same on every machine)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_SEED).digest())


def jwks() -> dict[str, Any]:
    """The public JWKS of the demo issuer."""
    jwk = OKPAlgorithm.to_jwk(private_key().public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": KID, "alg": "EdDSA", "use": "sig"}]}


def mint(sub: str, scope: str | None = None, ttl: int = 300, now: float | None = None) -> str:
    """A token for `sub`, valid for `ttl` seconds (negative: already expired)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": min(issued, issued + ttl),
        "exp": issued + ttl,
    }
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, private_key(), algorithm="EdDSA", headers={"kid": KID})


def send_json(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer 200 with a JSON body."""
    handler.send_response(200)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server answering GET /jwks.json (call serve_forever on it)."""
    body = json.dumps(jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            send_json(self, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    """`python -m guardrail_authz.demo.idp --port 8082`: serve the JWKS until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=PORT)
    server = serve(p.parse_args().port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    print(  # noqa: T201 - the ready line tests and the stack wait for
        f"demo idp ready: http://127.0.0.1:{server.server_address[1]}{JWKS_PATH}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
