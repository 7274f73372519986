"""TLS 1.3 contexts, and the rules that say when the gateway and shards must use them.

Traffic between the gateway and a shard stays in clear text only on loopback. A shard
reached off this host must be ``https://`` under mutual TLS: the shard asks for a client
certificate signed by ``shard_tls.ca_file`` and the gateway presents its own.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shardgate.security.certs import CertFiles
from shardgate.settings import Settings, SettingsError, ShardTlsSettings, TlsSettings

__all__ = [
    "ServerTls",
    "check_shard_urls",
    "client_context",
    "gateway_listener",
    "is_loopback",
    "require_tls13",
    "server_context",
    "shard_client_ssl",
    "shard_listener",
    "with_certs",
]


@dataclass(frozen=True)
class ServerTls:
    """A listener's certificate and key, and the CA its clients' certificates must chain to."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


def require_tls13(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def server_context(tls: ServerTls) -> ssl.SSLContext:
    context = require_tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=tls.client_ca)
    return context


def client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Trust only ``ca_file``, check host names, and present ``cert_file`` if given."""
    context = require_tls13(ssl.create_default_context(cafile=ca_file))
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def shard_client_ssl(settings: Settings) -> ssl.SSLContext | None:
    """The gateway's context for shards; None leaves https shards to the system's CAs."""
    tls = settings.shard_tls
    if tls.ca_file is None:
        return None
    return client_context(tls.ca_file, tls.gateway_cert_file, tls.gateway_key_file)


def with_certs(settings: Settings, files: CertFiles) -> Settings:
    """``settings`` with TLS on the public listener and mutual TLS to shards, from ``files``."""
    tls = TlsSettings(cert_file=files.gateway_cert.resolve(), key_file=files.gateway_key.resolve())
    shard_tls = ShardTlsSettings(
        enabled=True,
        ca_file=files.ca_cert.resolve(),
        gateway_cert_file=files.gateway_cert.resolve(),
        gateway_key_file=files.gateway_key.resolve(),
        shard_cert_file=files.shard_cert.resolve(),
        shard_key_file=files.shard_key.resolve(),
    )
    return settings.model_copy(update={"tls": tls, "shard_tls": shard_tls})


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_shard_urls(settings: Settings) -> None:
    """Raise SettingsError, one line per problem, unless every shard is safe to reach."""
    tls = settings.shard_tls
    mutual = tls.ca_file is not None and tls.gateway_cert_file is not None
    problems = []
    if tls.enabled and not mutual:
        problems.append(
            "shard_tls.enabled needs shard_tls.ca_file, gateway_cert_file and gateway_key_file"
        )
    for shard in settings.shards:
        url = urlsplit(shard.url)
        off_host = not is_loopback(url.hostname or "")
        if url.scheme != "https" and (off_host or tls.enabled):
            why = "is not on loopback" if off_host else "is in clear text but shard_tls.enabled"
            problems.append(f"shard {shard.url} {why}: use https:// and mutual TLS (shard_tls)")
        elif off_host and not mutual:
            problems.append(
                f"shard {shard.url} is not on loopback: set shard_tls.ca_file, "
                "gateway_cert_file and gateway_key_file (mutual TLS)"
            )
    if problems:
        raise SettingsError("\n".join(problems))
    files = {
        "ca_file": tls.ca_file,
        "gateway_cert_file": tls.gateway_cert_file,
        "gateway_key_file": tls.gateway_key_file,
    }
    _load("shard_tls", files, lambda: shard_client_ssl(settings))


def gateway_listener(settings: Settings) -> ServerTls | None:
    """TLS for the gateway's public listener, checked; None means plain HTTP."""
    if settings.tls.cert_file is None or settings.tls.key_file is None:
        return None
    tls = ServerTls(settings.tls.cert_file, settings.tls.key_file)
    files = {"cert_file": tls.cert_file, "key_file": tls.key_file}
    _load("tls", files, lambda: server_context(tls))
    return tls


def shard_listener(settings: Settings) -> ServerTls | None:
    """A shard's listener: mutual TLS off loopback or when enabled, else plain HTTP."""
    off_host = not is_loopback(settings.host)
    shard_tls = settings.shard_tls
    if not (off_host or shard_tls.enabled):
        return None
    if shard_tls.ca_file is None or shard_tls.shard_cert_file is None:
        why = f"listening on {settings.host} (not loopback)" if off_host else "shard_tls.enabled"
        raise SettingsError(
            f"a shard {why} needs mutual TLS: set shard_tls.ca_file, shard_cert_file "
            "and shard_key_file"
        )
    assert shard_tls.shard_key_file is not None  # the settings give both or neither
    tls = ServerTls(shard_tls.shard_cert_file, shard_tls.shard_key_file, shard_tls.ca_file)
    files = {
        "ca_file": tls.client_ca,
        "shard_cert_file": tls.cert_file,
        "shard_key_file": tls.key_file,
    }
    _load("shard_tls", files, lambda: server_context(tls))
    return tls


def _load(section: str, files: Mapping[str, Path | None], build: Callable[[], object]) -> None:
    """Fail with one line now rather than with a traceback when the listener starts."""
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise SettingsError(f"{section}.{name}: no file at {path}")
    try:
        build()
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load the {section} certificates: {exc}") from None
