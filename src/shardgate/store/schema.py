"""The tables, as SQLAlchemy Core metadata. Migrations (``migrations/versions``) create
them; this module is what queries are written against. Times are Unix seconds."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "LIMIT_COLUMNS",
    "api_key_secrets",
    "api_keys",
    "metadata",
    "safety_events",
    "tenants",
]

metadata = sa.MetaData()

# Rate limits and budgets (records.Limits), on tenants and on keys; NULL = the default.
LIMIT_COLUMNS = ("rpm", "tpm", "concurrency", "daily_tokens", "monthly_tokens")


def _limit_columns() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger) for name in LIMIT_COLUMNS]


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    *_limit_columns(),
    # The tenant's safety policy override (a partial policy); NULL: the settings' default.
    sa.Column("safety_policy", sa.JSON),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(128)),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("endpoints", sa.JSON, nullable=False),
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
    sa.Column("created_by", sa.String(64)),
    *_limit_columns(),
)

# A key has one current secret, and during a rotation's grace period the previous one.
api_key_secrets = sa.Table(
    "api_key_secrets",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column(
        "key_id",
        sa.String(32),
        sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
)

# What the content filter and the safety monitor found: never the text itself.
safety_events = sa.Table(
    "safety_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("key_id", sa.String(32)),
    sa.Column("request_id", sa.String(32), nullable=False),
    sa.Column("route", sa.String(32), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),  # input, output, moderation
    sa.Column("detector", sa.String(16), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # flag, redact, block, error
)
