"""TLS helpers for the process tests: https URLs, readiness over TLS, one raw exchange."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from urllib.parse import urlsplit

import httpx

from shardgate.security import CertFiles
from tests.conftest import Proc

KEY = "sk-sg-tls-admin-key-0123456789abcdef"


def https(proc: Proc) -> Proc:
    return dataclasses.replace(proc, url=proc.url.replace("http://", "https://", 1))


def port_of(proc: Proc) -> int:
    port = urlsplit(proc.url).port
    assert port is not None
    return port


def wait_ready_tls(proc: Proc, context: ssl.SSLContext, timeout: float = 60.0) -> None:
    """``tests.conftest.wait_ready`` over https, with ``context``'s CA and client certificate."""
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=context, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise AssertionError(f"process exited early:\n{proc.output()[-3000:]}")
            try:
                if client.get(proc.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout}s:\n{proc.output()[-3000:]}")


def exchange(port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    """(TLS version, reply) for one ``GET /readyz``; the reply is b"" if the server hangs up."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        version = conn.version() or ""
        try:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return version, conn.recv(65536)
        except TimeoutError:
            raise
        except OSError:  # an alert, a reset or a broken pipe: the server hung up
            return version, b""


def shard_env(certs: CertFiles) -> dict[str, str]:
    """A loopback shard under mutual TLS."""
    return {
        "SHARDGATE_SHARD_TLS__ENABLED": "true",
        "SHARDGATE_SHARD_TLS__CA_FILE": str(certs.ca_cert),
        "SHARDGATE_SHARD_TLS__SHARD_CERT_FILE": str(certs.shard_cert),
        "SHARDGATE_SHARD_TLS__SHARD_KEY_FILE": str(certs.shard_key),
    }


def gateway_env(certs: CertFiles) -> dict[str, str]:
    """A gateway with TLS on its listener, and its client certificate for shards."""
    return {
        "SHARDGATE_BOOTSTRAP_KEY": KEY,
        "SHARDGATE_TLS__CERT_FILE": str(certs.gateway_cert),
        "SHARDGATE_TLS__KEY_FILE": str(certs.gateway_key),
        "SHARDGATE_SHARD_TLS__CA_FILE": str(certs.ca_cert),
        "SHARDGATE_SHARD_TLS__GATEWAY_CERT_FILE": str(certs.gateway_cert),
        "SHARDGATE_SHARD_TLS__GATEWAY_KEY_FILE": str(certs.gateway_key),
        # The fake engine's "fake fake" reads as harmful to the output monitor; TLS is
        # what these tests are about, and tests/e2e/test_safety.py covers the filter.
        "SHARDGATE_SAFETY__ENABLED": "false",
    }
