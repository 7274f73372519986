"""A minimal pipelined Redis (RESP2) connection for the counter store's scripts.

redis-py's asyncio client spent about 130 µs of the gateway's CPU on each command
(bench/ratelimit.py), more than the rest of a request's admission together. This sends
every command on one socket without waiting for earlier replies, matches replies to
callers in order, and parses them with hiredis. Any failure or timeout closes the
connection and fails every caller waiting on it; the next call connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

__all__ = ["RedisConnection", "RedisReplyError"]


class RedisReplyError(Exception):
    """Redis answered with an error (e.g. NOSCRIPT)."""


def encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisConnection:
    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, not {parts.scheme}://")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._db = int(parts.path.strip("/") or 0)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._connecting = asyncio.Lock()

    async def call(self, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                writer = self._writer or await self._connect()
                return await self._send(writer, args)
        except TimeoutError:
            self._fail(TimeoutError(f"no reply from redis within {self._timeout}s"))
            raise

    async def close(self) -> None:
        self._fail(ConnectionError("closed"))

    def _send(self, writer: asyncio.StreamWriter, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        writer.write(encode(args))
        return future

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
            setup = []
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                setup.append(self._send(writer, ("AUTH", *auth)))
            if self._db:
                setup.append(self._send(writer, ("SELECT", self._db)))
            for reply in setup:
                await reply
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = self._waiters.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, hiredis.ReplyError):
                        future.set_exception(RedisReplyError(str(reply)))
                    else:
                        future.set_result(reply)
            raise ConnectionError("redis closed the connection")
        except (OSError, ConnectionError, hiredis.ProtocolError) as exc:
            self._fail(exc, from_reader=True)

    def _fail(self, exc: BaseException, from_reader: bool = False) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if writer is not None:
            writer.close()
        if task is not None and not from_reader:
            task.cancel()
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"redis: {exc}"))
                with contextlib.suppress(BaseException):
                    future.exception()  # a caller that timed out never reads it
