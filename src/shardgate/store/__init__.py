"""Storage seams. For now: API keys in a file in the data directory."""

from shardgate.store.keys import FileKeyStore, KeyStore, Principal, generate_key

__all__ = ["FileKeyStore", "KeyStore", "Principal", "generate_key"]
