"""Who is calling: API keys verified against the store, with a short-lived cache."""

from shardgate.identity.verifier import KeyVerifier

__all__ = ["KeyVerifier"]
