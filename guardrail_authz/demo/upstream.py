"""Demo upstream: answers every request with what it received (method, path, headers) as JSON,
and GET /api/customers/{id} with a customer record holding personal data (masking demo),
gzip-compressed when the request's Accept-Encoding lists gzip."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import signal
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1024 * 1024


def render(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The JSON echo of one request."""
    parts = urlsplit(target)
    return json.dumps(
        {
            "method": method,
            "path": parts.path,
            "query": {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()},
            "headers": _joined(headers),
            "body": body.decode("utf-8", "replace"),
        },
        indent=1,
    ).encode()


_OPEN: set[asyncio.StreamWriter] = set()
CUSTOMERS = "/api/customers/"
# A customer's "photo": bytes that are not JSON (and happen to hold an e-mail-like string),
# which masking must pass through untouched.
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"tEXt owner=dana@example.com\x00" * 4


def customer(customer_id: str) -> bytes:
    """A made-up customer record: an e-mail, a payment card (a test number that passes the
    Luhn check) and a US SSN — what the shipped masking policy hides."""
    return json.dumps(
        {
            "id": customer_id,
            "name": "Dana Example",
            "email": "dana@example.com",
            "phone": "+1 415 555 0100",
            "card": {"brand": "visa", "number": "4111 1111 1111 1111", "expires": "12/29"},
            "ssn": "123-45-6789",
            "note": "prefers e-mail to dana.alt@example.org",
        },
        indent=1,
    ).encode()


def _joined(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers joined with ',' (RFC 9110 field-line combination)."""
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve HTTP/1.1 requests on one connection (keep-alive, Content-Length bodies)."""
    _OPEN.add(writer)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers: list[tuple[str, str]] = []
            while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = raw.decode("latin-1").partition(":")
                headers.append((name.strip().lower(), value.strip()))
            fields = dict(headers)
            length = int(fields.get("content-length", "0") or 0)
            body = await reader.readexactly(min(length, MAX_BODY)) if length else b""
            path = urlsplit(target).path
            rest = path[len(CUSTOMERS) :] if path.startswith(CUSTOMERS) else ""
            content_type, encoding = "application/json", ""
            if method == "GET" and rest and "/" not in rest:
                payload = customer(rest)
                if "gzip" in fields.get("accept-encoding", "").lower():
                    payload, encoding = gzip.compress(payload), "content-encoding: gzip\r\n"
            elif method == "GET" and rest.endswith("/photo"):
                payload, content_type = PHOTO, "image/png"
            else:
                payload = render(method, target, headers, body)
            writer.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{encoding}".encode()
                + f"content-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        return
    finally:
        _OPEN.discard(writer)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT."""
    server = await asyncio.start_server(handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"demo upstream ready: http://{host}:{bound}", flush=True)  # noqa: T201
    async with server:
        await stop.wait()
        for writer in list(_OPEN):  # idle keep-alive connections end quietly
            writer.close()
        await asyncio.sleep(0.05)


def main() -> None:
    """`python -m guardrail_authz.demo.upstream --port 8081`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
