"""The store backends every contract test runs against: SQLite on disk, SQLite in memory,
and the real PostgreSQL (a fresh database per session, dropped afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shardgate.store import SqlStore, connect, upgrade
from shardgate.store.schema import metadata


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
