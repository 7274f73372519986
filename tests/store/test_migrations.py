"""Schema migrations: upgrade in place, idempotently, from several processes at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from shardgate.store import Limits, NewKey, SqlStore, connect, upgrade
from shardgate.store.database import current_revision, downgrade, head_revision


async def test_upgrade_creates_the_schema_and_keeps_data(database_url: str) -> None:
    engine = connect(database_url)
    try:
        await downgrade(engine, "base")  # the shared PostgreSQL database may be upgraded
        assert await current_revision(engine) is None
        assert await upgrade(engine) == head_revision()
        store = SqlStore(engine)
        await store.create_tenant("kept")
        await store.create_key(NewKey("kept", "user"), "a" * 64, "sk-sg-aaaa")
        # Upgrading a database already at head changes nothing and loses nothing.
        assert await upgrade(engine) == head_revision()
        assert [t.name for t in await store.list_tenants()] == ["kept"]
        assert len(await store.list_keys("kept")) == 1
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_of_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    engines = [connect(url) for _ in range(4)]
    try:
        revisions = await asyncio.gather(*(upgrade(e) for e in engines))
        assert set(revisions) == {head_revision()}
    finally:
        for engine in engines:
            await engine.dispose()
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "new.db").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"tenants", "api_keys", "api_key_secrets", "alembic_version"} <= tables


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.scalar(sa.text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(sa.text("PRAGMA foreign_keys"))) == 1
    finally:
        await engine.dispose()


async def test_limits_migration_upgrades_a_database_with_keys_in_place(database_url: str) -> None:
    engine = connect(database_url)
    try:
        await downgrade(engine, "base")
        await upgrade(engine, "0001")
        async with engine.begin() as conn:  # rows written by the 0001 schema
            await conn.execute(
                sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('ten_1', 'old', 1.0)")
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, tenant_id, role, endpoints, models, prefix, "
                    "created_at) VALUES ('key_1', 'ten_1', 'user', '[\"chat\"]', '[]', "
                    "'sk-sg-abcd', 2.0)"
                )
            )
        assert await upgrade(engine) == head_revision()
        store = SqlStore(engine)
        (key,) = await store.list_keys("old")
        assert (key.id, key.endpoints, key.limits) == ("key_1", ("chat",), Limits())
        assert await store.set_key_limits("key_1", Limits(rpm=5)) is not None
        assert (await store.get_key("key_1")).limits.rpm == 5  # type: ignore[union-attr]
    finally:
        await engine.dispose()
