"""Which shard serves a request: the registry, its health checks and the HTTP client."""

from shardgate.routing.client import ShardClient
from shardgate.routing.registry import Shard, ShardRegistry

__all__ = ["Shard", "ShardClient", "ShardRegistry"]
