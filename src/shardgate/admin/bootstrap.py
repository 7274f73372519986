"""Bringing the database up to date, and the platform's first admin key."""

from __future__ import annotations

import logging

from shardgate.settings import Settings
from shardgate.store import (
    ALL,
    NewKey,
    Store,
    database_url,
    display_prefix,
    generate_key,
    key_digest,
    open_store,
)

__all__ = ["PLATFORM_TENANT", "ensure_admin_key", "prepare_database"]

log = logging.getLogger("shardgate")

PLATFORM_TENANT = "platform"


async def prepare_database(settings: Settings) -> Store:
    """The configured store, its schema upgraded in place."""
    return await open_store(database_url(settings), migrate=True)


async def ensure_admin_key(store: Store, bootstrap: str | None, generate: bool) -> str | None:
    """Make sure an admin key exists: the bootstrap key if one is set, else (when
    ``generate``) a new one, which is returned so it can be shown once."""
    if await store.has_admin_key():
        return None
    if bootstrap is None and not generate:
        log.warning("no admin key exists yet: set SHARDGATE_BOOTSTRAP_KEY or run 'shardgate up'")
        return None
    secret = bootstrap or generate_key()
    digest = key_digest(secret)
    if await store.find_secret(digest) is not None:
        # A revoked bootstrap key stays revoked; it does not come back on a restart.
        log.warning("the bootstrap key was revoked; not creating an admin key from it")
        return None
    if await store.get_tenant(PLATFORM_TENANT) is None:
        await store.create_tenant(PLATFORM_TENANT)
    spec = NewKey(
        PLATFORM_TENANT,
        "admin",
        (ALL,),
        (ALL,),
        name="bootstrap" if bootstrap else "first admin key",
        created_by="bootstrap",
    )
    await store.create_key(spec, digest, display_prefix(secret))
    if bootstrap:
        log.info("the bootstrap key is now the first admin key")
        return None
    return secret
