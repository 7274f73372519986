"""Running an ASGI app under uvicorn with shardgate's logging."""

from __future__ import annotations

import gc
import logging
import socket

import uvicorn
from starlette.applications import Starlette

__all__ = ["configure_logging", "free_port", "serve"]


def configure_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def serve(app: Starlette, host: str, port: int, log_level: str) -> None:
    # Objects alive at start-up (modules, settings, the app) never become garbage: keep
    # them out of the collector's scans and collect young objects less often, which trims
    # the latency tail of a busy server.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=5,
        log_config=None,
        # X-Forwarded-* headers are not trusted: whoever sends them could set them.
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
