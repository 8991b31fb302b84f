"""A no-op Check server: same grpc aio setup as guardrail-authz, fixed pre-serialized OK answer;
with --batch-wait-ms, answered through the same micro-batching as guardrail-authz."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc

from guardrail_authz.server.batch import Batcher
from guardrail_authz.wire.envoy.service.auth.v3.external_auth_pb2 import CheckResponse

SERVICE = "envoy.service.auth.v3.Authorization"


def ok_response() -> bytes:
    """The fixed answer: status OK with an empty ok_response."""
    resp = CheckResponse()
    resp.status.code = 0
    resp.ok_response.SetInParent()
    return resp.SerializeToString()


async def serve(addr: str, batch_wait: float = 0.0) -> None:
    """Serve Check on addr until SIGTERM/SIGINT; prints a ready line with the bound port."""
    answer = ok_response()
    batcher: Batcher[bytes, bytes] = Batcher(lambda _payload: answer, batch_wait)

    async def check(_payload: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return answer

    async def batched(payload: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return await batcher.submit(payload)

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    method = grpc.unary_unary_rpc_method_handler(batched if batch_wait > 0 else check)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Check": method})]
    )
    port = server.add_insecure_port(addr)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"noop ready: grpc={addr.rpartition(':')[0]}:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    """Entry point: `python -m bench.noop_server --grpc 127.0.0.1:0`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--grpc", default="127.0.0.1:0", help="listen HOST:PORT (0 = any free port)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0, help="batch like guardrail-authz")
    args = p.parse_args()
    asyncio.run(serve(args.grpc, args.batch_wait_ms / 1000))


if __name__ == "__main__":
    main()
