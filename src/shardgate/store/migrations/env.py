"""Alembic's entry point. shardgate always hands it an open connection
(``shardgate.store.database.upgrade``), so there is no offline mode and no URL here."""

from __future__ import annotations

from alembic import context

from shardgate.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'shardgate db upgrade', not the alembic command")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
