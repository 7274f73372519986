"""Safety: a tenant's policy override, and the safety events table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("safety_policy", sa.JSON))
    op.create_table(
        "safety_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("detector", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
    )
    op.create_index("ix_safety_events_created_at", "safety_events", ["created_at"])
    op.create_index("ix_safety_events_tenant", "safety_events", ["tenant"])


def downgrade() -> None:
    op.drop_table("safety_events")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("safety_policy")
