"""TLS for the gateway's public listener, and mutual TLS between the gateway and shards."""

from shardgate.security.certs import CertError, CertFiles, init_certs
from shardgate.security.tls import (
    ServerTls,
    check_shard_urls,
    client_context,
    gateway_listener,
    is_loopback,
    server_context,
    shard_client_ssl,
    shard_listener,
    with_certs,
)

__all__ = [
    "CertError",
    "CertFiles",
    "ServerTls",
    "check_shard_urls",
    "client_context",
    "gateway_listener",
    "init_certs",
    "is_loopback",
    "server_context",
    "shard_client_ssl",
    "shard_listener",
    "with_certs",
]
