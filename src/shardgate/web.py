"""HTTP helpers shared by the gateway and the shard: bodies, JSON and error responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shardgate.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ShardgateError,
    error_body,
)

__all__ = [
    "JSONResponse",
    "error_response",
    "exception_handlers",
    "read_body",
    "sse_event",
    "sse_response",
]

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: ShardgateError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_response(chunks: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Response:
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The whole body, refusing anything over ``limit`` bytes before reading it all, and a
    body not all received within ``timeout_s`` (408, and the connection is closed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("the Content-Length header is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_stream(request, limit)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body was not received within {timeout_s:g} s",
            headers={"Connection": "close"},  # the rest of it may still be on its way
        ) from None


async def _read_stream(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _shardgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShardgateError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"no route for {request.method} {request.url.path}"))
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        )
    body = error_body(str(exc.detail), "invalid_request_error")
    return JSONResponse(body, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("the server had an internal error", "internal_error"), status_code=500
    )


exception_handlers: dict[Any, Any] = {
    ShardgateError: _shardgate_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
