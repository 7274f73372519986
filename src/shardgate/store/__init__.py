"""Storage seams (protocols) and their SQL implementation, with schema migrations."""

from shardgate.store.base import Conflict, KeyStore, SafetyEventStore, Store, TenantStore
from shardgate.store.database import (
    STORE_ERRORS,
    DatabaseError,
    connect,
    database_url,
    upgrade,
)
from shardgate.store.keys import KEY_PREFIX, display_prefix, generate_key, key_digest
from shardgate.store.records import (
    ALL,
    ENDPOINTS,
    NO_LIMITS,
    ROLES,
    ApiKey,
    Limits,
    NewKey,
    Principal,
    Role,
    SafetyEvent,
    SecretMatch,
    Tenant,
)
from shardgate.store.sql import SqlStore

__all__ = [
    "ALL",
    "ENDPOINTS",
    "KEY_PREFIX",
    "NO_LIMITS",
    "ROLES",
    "STORE_ERRORS",
    "ApiKey",
    "Conflict",
    "DatabaseError",
    "KeyStore",
    "Limits",
    "NewKey",
    "Principal",
    "Role",
    "SafetyEvent",
    "SafetyEventStore",
    "SecretMatch",
    "SqlStore",
    "Store",
    "Tenant",
    "TenantStore",
    "connect",
    "database_url",
    "display_prefix",
    "generate_key",
    "key_digest",
    "open_store",
    "upgrade",
]


async def open_store(url: str, migrate: bool = True) -> SqlStore:
    """Connect to the database at ``url``, upgrading its schema first unless told not to."""
    engine = connect(url)
    if migrate:
        await upgrade(engine)
    return SqlStore(engine)
