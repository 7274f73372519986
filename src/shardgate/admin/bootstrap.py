"""Bringing the database up to date, and the platform's first admin key."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from shardgate.settings import Settings
from shardgate.store import (
    ALL,
    Conflict,
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
    """The configured store, its schema upgraded in place, with the keys of the JSON key
    file that shardgate used before it had a database imported."""
    store = await open_store(database_url(settings), migrate=True)
    legacy = settings.data_dir / "keys.json"
    if legacy.exists():
        await _import_key_file(store, legacy)
    return store


async def _import_key_file(store: Store, path: Path) -> None:
    """The file held SHA-256 hashes and prefixes, as the store does: the keys keep working.
    Its keys were admin keys with no scopes yet, which then meant every endpoint."""
    records = json.loads(path.read_text() or "[]")  # noqa: ASYNC240 (once, before serving)
    await _ensure_platform_tenant(store)
    for record in records:
        if await store.find_secret(record["hash"]) is not None:
            continue
        spec = NewKey(
            PLATFORM_TENANT, "admin", (ALL,), (ALL,), name="imported", created_by="import"
        )
        with contextlib.suppress(Conflict):
            await store.create_key(spec, record["hash"], record["prefix"])
    path.rename(path.with_name("keys.json.imported"))  # noqa: ASYNC240
    log.info("imported %d keys from %s into the database", len(records), path)


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
    await _ensure_platform_tenant(store)
    spec = NewKey(
        PLATFORM_TENANT,
        "admin",
        (ALL,),
        (ALL,),
        name="bootstrap" if bootstrap else "first admin key",
        created_by="bootstrap",
    )
    try:
        await store.create_key(spec, digest, display_prefix(secret))
    except Conflict:  # another gateway starting at the same moment created it
        return None
    if bootstrap:
        log.info("the bootstrap key is now the first admin key")
        return None
    return secret


async def _ensure_platform_tenant(store: Store) -> None:
    if await store.get_tenant(PLATFORM_TENANT) is None:
        with contextlib.suppress(Conflict):  # made by a process starting alongside
            await store.create_tenant(PLATFORM_TENANT)
