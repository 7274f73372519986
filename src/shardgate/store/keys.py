"""API key material: ``sk-sg-`` and 32 random bytes. Only a SHA-256 hash and a short
display prefix are ever stored; a 256-bit random secret needs no slow password hash."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "MAX_KEY_LENGTH", "display_prefix", "generate_key", "key_digest"]

KEY_PREFIX = "sk-sg-"
MAX_KEY_LENGTH = 256  # longer bearer tokens are refused before hashing


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """Enough to tell keys apart in a listing; 4 characters of the secret reveal 24 bits."""
    return secret[: len(KEY_PREFIX) + 4]
