"""A bare byte passthrough: the floor a Python proxy can reach on this machine.

    python -m bench.passthrough --port 8100 --upstream http://127.0.0.1:11434

aiohttp's server in front of aiohttp's client (the gateway's upstream client) on uvloop (the
gateway's loop), one process: each request's body goes to the upstream as it is, on the same
path, and each chunk of the answer goes back as it arrives. No auth, no limits, no checks, no
logs, no metrics, no line alignment: what the gateway adds beyond this is its own cost.
Loopback only; for bench/hotpath.py.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlparse

import aiohttp
import uvloop
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    state: dict[str, aiohttp.ClientSession] = {}

    async def session_context(app: web.Application):
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=120)) as session:
            state["session"] = session
            yield

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with state["session"].request(
                request.method, upstream + request.path_qs, data=body,
                headers={"Content-Type": "application/json",
                         "Accept-Encoding": "identity"}) as answer:
            response = web.StreamResponse(status=answer.status)
            response.content_type = answer.content_type
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    if urlparse(args.upstream).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--upstream must be a loopback URL")
    web.run_app(make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port,
                access_log=None, print=None, loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
