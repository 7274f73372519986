"""A pooled aiohttp client for the gateway's calls to shards."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import orjson

__all__ = ["ShardClient", "ShardConnectionError"]

# aiohttp raises these when a shard is unreachable, resets, or times out.
ShardConnectionError = (aiohttp.ClientError, TimeoutError)


class ShardClient:
    def __init__(
        self,
        connect_timeout_s: float,
        read_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` is for https shards (mutual TLS); None verifies with system CAs."""
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._probe_timeout = aiohttp.ClientTimeout(total=max(connect_timeout_s, 2.0))
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, keepalive_timeout=30, ttl_dns_cache=300, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Shards have no business setting cookies, and the jar costs time per call.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeout,
                auto_decompress=False,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def post(self, url: str, body: bytes, request_id: str) -> aiohttp.ClientResponse:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        return await self.session.post(url, data=body, headers=headers)

    async def probe(self, base_url: str) -> tuple[bool, list[str]] | None:
        """(ready, models) from a shard, or None if it cannot be reached."""
        try:
            async with self.session.get(base_url + "/readyz", timeout=self._probe_timeout) as ready:
                await ready.read()
                is_ready = ready.status == 200
            async with self.session.get(
                base_url + "/v1/models", timeout=self._probe_timeout
            ) as listing:
                data: Any = orjson.loads(await listing.read()) if listing.status == 200 else {}
        except ShardConnectionError:
            return None
        models = [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]
        return is_ready, models

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
