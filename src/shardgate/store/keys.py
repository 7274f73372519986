"""API keys: only a hash and a display prefix are stored, never the secret.

``KeyStore`` is the seam that the persistent, multi-tenant store replaces later; the
file store here holds the platform's bootstrap admin key in ``<data_dir>/keys.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

__all__ = ["FileKeyStore", "KeyStore", "Principal", "generate_key"]

KEY_PREFIX = "sk-sg-"
Role = Literal["admin", "tenant-admin", "user", "auditor"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its tenant and its role."""

    key_id: str
    tenant: str
    role: Role


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore(Protocol):
    async def verify(self, secret: str) -> Principal | None: ...

    async def has_admin(self) -> bool: ...

    async def add(self, secret: str, *, tenant: str, role: Role) -> Principal: ...


class FileKeyStore:
    """Keys in a JSON file, re-read when the file changes (checked once a second)."""

    def __init__(self, path: Path, recheck_s: float = 1.0) -> None:
        self._path = path
        self._recheck_s = recheck_s
        self._checked = 0.0
        self._mtime: float | None = None
        self._records: dict[str, dict[str, str]] = {}

    async def verify(self, secret: str) -> Principal | None:
        if len(secret) > 512:
            return None
        self._refresh()
        digest = _digest(secret)
        record = self._records.get(digest)
        if record is None or not hmac.compare_digest(record["hash"], digest):
            return None
        return Principal(record["id"], record["tenant"], record["role"])  # type: ignore[arg-type]

    async def has_admin(self) -> bool:
        self._refresh(force=True)
        return any(r["role"] == "admin" for r in self._records.values())

    async def add(self, secret: str, *, tenant: str, role: Role) -> Principal:
        self._refresh(force=True)
        record = {
            "id": "key_" + uuid.uuid4().hex[:16],
            "hash": _digest(secret),
            "prefix": secret[: len(KEY_PREFIX) + 4],
            "tenant": tenant,
            "role": role,
            "created": str(int(time.time())),
        }
        self._records[record["hash"]] = record
        self._write()
        return Principal(record["id"], tenant, role)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._recheck_s:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            self._records, self._mtime = {}, None
            return
        if mtime != self._mtime:
            records = json.loads(self._path.read_text() or "[]")
            self._records = {r["hash"]: r for r in records}
            self._mtime = mtime

    def _write(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(list(self._records.values()), f, indent=1)
        partial.replace(self._path)
        self._mtime = self._path.stat().st_mtime
