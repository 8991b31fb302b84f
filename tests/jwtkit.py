"""Real keys, real signed tokens and a real JWKS/discovery server on loopback, for the JWT tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from guardrail_authz.demo.idp import send_json

ISSUER_PATH = "/idp"
AUDIENCE = "guardrail-test"


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm and its public JWK (with kid and alg)."""

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header}
        )


def make_key(alg: str, kid: str) -> SigningKey:
    """A fresh key pair for RS256, ES256 or EdDSA."""
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, private, {**jwk, "kid": kid, "alg": alg, "use": "sig"})


@dataclass
class Idp:
    """A loopback identity provider: discovery document and JWKS, counted and breakable."""

    keys: list[SigningKey]
    port: int = 0
    jwks_hits: int = 0
    discovery_hits: int = 0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{ISSUER_PATH}"

    @property
    def jwks_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def claims(self, sub: str = "alice", ttl: float = 300, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + int(ttl),
            **extra,
        }


@contextmanager
def serve_idp(keys: list[SigningKey]) -> Iterator[Idp]:
    """Serve an Idp on 127.0.0.1 (a free port) until the block ends."""
    idp = Idp(list(keys))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if idp.down:
                self.send_error(503)
                return
            if self.path == "/jwks.json":
                with idp.lock:
                    idp.jwks_hits += 1
                    body = json.dumps({"keys": [k.jwk for k in idp.keys]}).encode()
            elif self.path == ISSUER_PATH + "/.well-known/openid-configuration":
                with idp.lock:
                    idp.discovery_hits += 1
                body = json.dumps({"issuer": idp.issuer, "jwks_uri": idp.jwks_uri}).encode()
            else:
                self.send_error(404)
                return
            send_json(self, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    idp.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
