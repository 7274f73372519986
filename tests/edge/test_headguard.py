"""Connection bounds the HTTP server enforces: head deadlines and size, connection count.

These run uvicorn in the test's own event loop with ``server_config``, the configuration
``serve`` runs the gateway with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from shardgate.serve import free_port, server_config
from shardgate.settings import EdgeSettings

GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


@contextlib.asynccontextmanager
async def running(edge: EdgeSettings) -> AsyncIterator[int]:
    port = free_port()
    app = Starlette(routes=[Route("/", hello)])
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, "error", None, edge))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    lines = head.lower().split(b"\r\n")
    length = next(int(line[15:]) for line in lines if line.startswith(b"content-length:"))
    return head + await reader.readexactly(length)


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (reading whatever it sends)."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        while await asyncio.wait_for(reader.read(65536), limit_s):
            pass
    return time.monotonic() - started


async def test_a_silent_connection_is_closed() -> None:
    async with running(EdgeSettings(header_timeout_s=0.5)) as port:
        reader, writer = await connect(port)
        assert 0.4 < await closed_after(reader, 3) < 2.5
        writer.close()


async def test_a_slowly_sent_head_is_cut_off() -> None:
    async with running(EdgeSettings(header_timeout_s=0.5)) as port:
        reader, writer = await connect(port)
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in GET[:-2]:  # never the final blank line
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        await closed_after(reader, 3)
        assert 0.4 < time.monotonic() - started < 2.5
        sender.cancel()
        writer.close()


async def test_kept_alive_connections_are_not_cut_between_requests() -> None:
    async with running(EdgeSettings(header_timeout_s=0.3)) as port:
        reader, writer = await connect(port)
        for _ in range(3):
            writer.write(GET)
            assert (await response(reader)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.5)  # idle longer than the head deadline, under keep-alive's
        # A head begun on a kept-alive connection has its own deadline.
        writer.write(GET[:10])
        assert await closed_after(reader, 3) < 2
        writer.close()


async def test_an_oversized_head_gets_400_and_a_closed_connection() -> None:
    async with running(EdgeSettings(max_header_bytes=2048)) as port:
        reader, writer = await connect(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        assert (await response(reader)).startswith(b"HTTP/1.1 400")
        assert await closed_after(reader, 3) < 2
        writer.close()
        reader, writer = await connect(port)  # a head just under the bound is fine
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 1900 + b"\r\n\r\n")
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_connections_beyond_the_bound_get_503() -> None:
    async with running(EdgeSettings(max_connections=3)) as port:
        idle = [await connect(port) for _ in range(3)]
        reader, writer = await connect(port)
        writer.write(GET)
        refused = await response(reader)
        assert refused.startswith(b"HTTP/1.1 503") and b"connection: close" in refused
        writer.close()
        for _, idle_writer in idle:
            idle_writer.close()
            await idle_writer.wait_closed()
        await asyncio.sleep(0.1)
        reader, writer = await connect(port)
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
