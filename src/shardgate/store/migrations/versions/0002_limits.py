"""Rate limits and token budgets on tenants and keys (NULL: the settings' default).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("rpm", "tpm", "concurrency", "daily_tokens", "monthly_tokens")


def upgrade() -> None:
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name in COLUMNS:
                batch.add_column(sa.Column(name, sa.BigInteger))


def downgrade() -> None:
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name in COLUMNS:
                batch.drop_column(name)
