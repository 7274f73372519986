"""Running an ASGI app under uvicorn with shardgate's logging."""

from __future__ import annotations

import gc
import logging
import socket
import ssl

import uvicorn
from starlette.applications import Starlette

from shardgate.headguard import head_guard_protocol
from shardgate.security.tls import ServerTls, require_tls13
from shardgate.settings import EdgeSettings

__all__ = ["configure_logging", "free_port", "serve", "server_config"]


def configure_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def serve(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    tls: ServerTls | None = None,
    edge: EdgeSettings | None = None,
) -> None:
    """Run ``app`` until stopped; with ``tls``, over TLS 1.3 only (and mutual if it names a
    CA); with ``edge``, under its connection bounds (a public listener's)."""
    # Objects alive at start-up (modules, settings, the app) never become garbage: keep
    # them out of the collector's scans and collect young objects less often, which trims
    # the latency tail of a busy server.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.Server(server_config(app, host, port, log_level, tls, edge)).run()


def server_config(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    tls: ServerTls | None = None,
    edge: EdgeSettings | None = None,
) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http=(
            head_guard_protocol(edge.header_timeout_s, edge.max_header_bytes)
            if edge
            else "httptools"
        ),
        limit_concurrency=edge.max_connections if edge else None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        log_config=None,
        # uvicorn would believe X-Forwarded-* from anyone listed; the gateway reads
        # X-Forwarded-For itself, from its trusted proxies only (edge.trusted_proxies).
        proxy_headers=False,
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca else ssl.CERT_NONE,
        ssl_ca_certs=tls.client_ca if tls else None,
    )
    if tls is not None:
        # uvicorn builds the context in load() and has no setting for the minimum version;
        # run() skips load() for a config already loaded.
        config.load()
        assert config.ssl is not None
        require_tls13(config.ssl)
    return config


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
