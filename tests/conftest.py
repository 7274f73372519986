"""Shared fixtures: the model cache, and starting shardgate processes on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from shardgate.serve import free_port
from shardgate.settings import Settings
from shardgate.shard.catalog import find_source, prepare

REPO = Path(__file__).resolve().parent.parent
# Converted weights are shared by every test run on this machine (and ignored by git).
MODEL_CACHE = REPO / "var" / "models"
CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
# Short prompts with short, stable greedy answers from SmolLM2.
QUESTIONS = [
    "What is the capital of France?",
    "Name three colors.",
    "Write a haiku about the sea.",
    "What is 2+2?",
    "Describe a cat in one sentence.",
    "What is the largest planet?",
    "Say hello in Spanish.",
    "Why is the sky blue?",
]


@pytest.fixture(scope="session")
def chat_model_dir() -> Path:
    """The SmolLM2 transformers folder, converted from its GGUF file on first use."""
    spec = Settings().model(CHAT_MODEL)
    assert spec is not None
    return prepare(find_source(spec), MODEL_CACHE)


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(args: list[str], tmp: Path, port: int, env: dict[str, str] | None = None) -> Proc:
    """Run ``shardgate ARGS`` in its own process group, logging to a file."""
    log = tmp / f"{args[0]}-{port}.log"
    full_env = {**os.environ, "SHARDGATE_MODEL_CACHE_DIR": str(MODEL_CACHE), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "shardgate", *args, "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )
    return Proc(process, f"http://127.0.0.1:{port}", log)


def wait_ready(proc: Proc, timeout: float = 180.0, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise AssertionError(f"process exited early:\n{proc.output()[-3000:]}")
        try:
            if httpx.get(proc.url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout}s:\n{proc.output()[-3000:]}")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proc")


@contextlib.contextmanager
def fake_gateways(
    tmp: Path,
    gateway_envs: Sequence[Mapping[str, str]],
    shard_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[Proc, list[Proc]]]:
    """One fake-engine shard and a gateway routed to it per entry of ``gateway_envs`` (its
    environment), each gateway with its own data directory ``tmp/g<i>``; all ready. The
    content filter is off unless an environment turns it on: these gateways test other
    stages, and loading its models costs each one seconds."""
    shard = start(
        ["shard", "--engine", "fake", "--models", CHAT_MODEL, "--data-dir", str(tmp)],
        tmp,
        free_port(),
        env=dict(shard_env or {}),
    )
    gateways = [
        start(
            ["gateway", "--data-dir", str(tmp / f"g{i}"), "--shard", shard.url],
            tmp,
            free_port(),
            env={"SHARDGATE_SAFETY__ENABLED": "false", **env},
        )
        for i, env in enumerate(gateway_envs)
    ]
    try:
        for proc in (shard, *gateways):
            wait_ready(proc, 60)
        yield shard, gateways
    finally:
        for proc in (*gateways, shard):
            proc.stop()


@pytest.fixture(scope="module")
def fake_stack(module_tmp: Path) -> Iterator[tuple[Proc, Proc, str]]:
    """A gateway in front of one fake-engine shard: (gateway, shard, api key)."""
    key = "sk-sg-fake-stack-key-0123456789"
    env = {"SHARDGATE_BOOTSTRAP_KEY": key, "SHARDGATE_MAX_BODY_BYTES": "65536"}
    with fake_gateways(module_tmp, [env]) as (shard, (gateway,)):
        yield gateway, shard, key


# The server .ci/services.sh starts; trust auth on loopback.
ADMIN_URL = os.environ.get("SHARDGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def new_postgres_database() -> Iterator[Callable[[], str]]:
    """Makes new, empty PostgreSQL databases (their URLs); all are dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"shardgate_test_{secrets.token_hex(4)}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    for name in made:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database(new_postgres_database: Callable[[], str]) -> str:
    """One PostgreSQL database for the whole session."""
    return new_postgres_database()
