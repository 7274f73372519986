"""The store backends every contract test runs against: SQLite on disk, SQLite in memory,
and the real PostgreSQL (a fresh database per session, dropped afterwards)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from shardgate.store import SqlStore, connect, upgrade
from shardgate.store.schema import metadata

# The server .ci/services.sh starts; trust auth on loopback.
ADMIN_URL = os.environ.get("SHARDGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; its URL."""
    import asyncio

    name = f"shardgate_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "sqlite-memory", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if request.param == "sqlite-memory":
        return "sqlite://"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    engine = connect(database_url)
    await upgrade(engine)
    async with engine.begin() as conn:  # the PostgreSQL database is shared by the session
        for table in reversed(metadata.sorted_tables):
            await conn.execute(sa.delete(table))
    store = SqlStore(engine)
    try:
        yield store
    finally:
        await store.close()
