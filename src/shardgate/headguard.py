"""Deadlines and a size bound for request heads, which uvicorn (httptools) does not have.

uvicorn times out only idle keep-alive connections: a new connection that sends nothing, or
sends its request line and headers a byte at a time (slowloris), is held for ever, and
httptools accepts headers of any size. This protocol closes a connection whose request head
is not complete ``head_timeout_s`` after the connection opened (its first request) or after
the head began (later requests on a kept-alive connection), and refuses a head over
``max_head_bytes`` (uvicorn answers 400 to a parser error and closes the connection).
A deadline that passes while a response is being sent lets it finish, then closes.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadGuardProtocol", "head_guard_protocol"]


class HeadTooLarge(Exception):
    pass


class HeadGuardProtocol(HttpToolsProtocol):
    head_timeout_s = 10.0
    max_head_bytes = 64 * 1024

    _head_bytes = 0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_deadline is None:  # armed already for a connection's first request
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise HeadTooLarge  # to httptools, a callback error: uvicorn answers 400, closes

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined request's response is on its way
        elif not self.transport.is_closing():
            self.transport.close()


def head_guard_protocol(head_timeout_s: float, max_head_bytes: int) -> type[HeadGuardProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these bounds."""

    class BoundHeadGuard(HeadGuardProtocol):
        pass

    BoundHeadGuard.head_timeout_s = head_timeout_s
    BoundHeadGuard.max_head_bytes = max_head_bytes
    return BoundHeadGuard
