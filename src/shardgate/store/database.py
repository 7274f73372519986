"""Which database, how to connect to it, and bringing its schema up to date (Alembic).

``sqlite:///path`` (default: ``<data_dir>/shardgate.db``), ``sqlite://`` (in memory) and
``postgresql://user@host/db`` are accepted; the async drivers (aiosqlite, asyncpg) are
filled in here so that settings hold the plain URLs operators know.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from shardgate.settings import Settings

__all__ = [
    "STORE_ERRORS",
    "DatabaseError",
    "connect",
    "current_revision",
    "database_url",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary constant: PostgreSQL's advisory lock that serialises concurrent upgrades.
_PG_UPGRADE_LOCK = 0x5A4D_6761_7465


class DatabaseError(Exception):
    """The database URL is not usable."""


# What using the database can raise: a bad URL, no server, refused credentials, SQL errors.
STORE_ERRORS = (DatabaseError, OSError, sa.exc.SQLAlchemyError, asyncpg.PostgresError)


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return f"sqlite:///{settings.data_dir.resolve() / 'shardgate.db'}"


def connect(url: str) -> AsyncEngine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        return create_async_engine(
            parsed.set(drivername="postgresql+asyncpg"), pool_size=10, pool_pre_ping=True
        )
    raise DatabaseError(f"unsupported database '{backend}': use sqlite:/// or postgresql://")


def _sqlite_engine(url: sa.URL) -> AsyncEngine:
    options: dict[str, Any] = {}
    if url.database in (None, "", ":memory:"):
        # One connection, shared, or every connection would see its own empty database.
        options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **options)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the CLI write while gateways read; busy_timeout waits out a writer.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str:
    """Migrate the schema in place to ``revision``; safe to run from several processes
    at once. Returns the revision the database is at afterwards."""
    async with _file_lock(engine), engine.begin() as conn:
        await _lock_postgres(conn)
        await conn.run_sync(_run_upgrade, revision)
    return await current_revision(engine) or "base"


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), revision))


def _run_upgrade(connection: sa.Connection, revision: str) -> None:
    command.upgrade(_alembic_config(connection), revision)


async def _lock_postgres(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})"))


@asynccontextmanager
async def _file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(database + ".migrate-lock", "a") as lock:  # noqa: ASYNC230 (opens a lock file)
        # Waited for in a thread: another upgrade in this same process may hold it.
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
