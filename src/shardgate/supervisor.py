"""``shardgate up``: the gateway and its shards as child processes, restarted if they die."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import yaml

from shardgate.serve import free_port
from shardgate.settings import Settings

__all__ = ["Child", "Supervisor", "plan_children"]

log = logging.getLogger("shardgate.up")

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


def plan_children(settings: Settings, config_file: str | None) -> tuple[list[Child], list[str]]:
    """The shard and gateway commands, with shard ports fixed for the whole run."""
    base = [sys.executable, "-m", "shardgate"]
    common = ["--data-dir", str(settings.data_dir)]
    if config_file:
        common += ["--config", config_file]
    scheme = "https" if settings.shard_tls.enabled else "http"
    children, urls = [], []
    for i, spec in enumerate(settings.up_shards):
        port = spec.port or free_port()
        url = f"{scheme}://127.0.0.1:{port}"
        urls.append(url)
        argv = [
            *base,
            "shard",
            *common,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--models",
            ",".join(spec.models),
        ]
        children.append(Child(f"shard-{i}", argv, _tls_environ(settings, "shard")))
    shards = [
        {"url": u, "models": list(s.models)} for u, s in zip(urls, settings.up_shards, strict=True)
    ]
    gateway = Child(
        "gateway",
        [*base, "gateway", *common, "--host", settings.host, "--port", str(settings.port)],
        env={
            "SHARDGATE_SHARDS": yaml.safe_dump(shards, default_flow_style=True).strip(),
            **_tls_environ(settings, "gateway"),
            **_database_environ(settings),
        },
    )
    return [*children, gateway], urls


def _database_environ(settings: Settings) -> dict[str, str]:
    """``up --database-url`` reaches the gateway (shards keep no state)."""
    url = settings.database_url
    return {} if url is None else {"SHARDGATE_DATABASE_URL": url.get_secret_value()}


def _tls_environ(settings: Settings, role: str) -> dict[str, str]:
    """The TLS settings a child needs, as variables: a shard is not handed the gateway's key."""
    values: dict[str, object] = {"SHARD_TLS__CA_FILE": settings.shard_tls.ca_file}
    if role == "gateway":
        values.update(
            TLS__CERT_FILE=settings.tls.cert_file,
            TLS__KEY_FILE=settings.tls.key_file,
            SHARD_TLS__GATEWAY_CERT_FILE=settings.shard_tls.gateway_cert_file,
            SHARD_TLS__GATEWAY_KEY_FILE=settings.shard_tls.gateway_key_file,
        )
    else:
        values.update(
            SHARD_TLS__SHARD_CERT_FILE=settings.shard_tls.shard_cert_file,
            SHARD_TLS__SHARD_KEY_FILE=settings.shard_tls.shard_key_file,
        )
    # Quoted, since variables are read as YAML scalars and a path may hold "#" or ": ".
    env = {f"SHARDGATE_{k}": json.dumps(str(v)) for k, v in values.items() if v is not None}
    if settings.shard_tls.enabled:
        env["SHARDGATE_SHARD_TLS__ENABLED"] = "true"
    return env


class Supervisor:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        watchers = [asyncio.create_task(self._keep_running(c)) for c in self.children]
        await self._stopping.wait()
        log.info("stopping")
        for task in watchers:
            task.cancel()
        await asyncio.gather(*(self._terminate(c) for c in self.children))

    async def _keep_running(self, child: Child) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            child.process = await asyncio.create_subprocess_exec(
                *child.argv, env={**os.environ, **child.env}, start_new_session=True
            )
            log.info("%s started (pid %d)", child.name, child.process.pid)
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff = 1.0
            child.restarts += 1
            log.warning("%s exited with code %s; restarting in %.0fs", child.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _terminate(self, child: Child) -> None:
        proc = child.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("%s stopped", child.name)
