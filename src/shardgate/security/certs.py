"""A private certificate authority, and the gateway and shard certificates it signs.

``init_certs`` writes six PEM files into one directory: ``ca.pem``/``ca.key`` (the CA),
``gateway.pem``/``gateway.key`` and ``shard.pem``/``shard.key``. Both leaf certificates
carry serverAuth and clientAuth, since the gateway's is also its client certificate
towards shards. Private keys are created with mode 0600 and never widened.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertError", "CertFiles", "init_certs"]

CA_DAYS = 3650
LEAF_DAYS = 825
# Certificates start a little in the past so that a peer whose clock lags still accepts them.
BACKDATE = dt.timedelta(minutes=5)
ROLES = ("gateway", "shard")


class CertError(Exception):
    """The certificate directory cannot be completed as asked."""


@dataclass(frozen=True)
class CertFiles:
    """Where the CA and the certificates live, and what the last ``init_certs`` did."""

    directory: Path
    created: tuple[Path, ...] = ()
    # Names asked for that a kept certificate does not carry (reissue with force=True).
    missing_names: tuple[str, ...] = ()

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def cert(self, role: str) -> Path:
        return self.directory / f"{role}.pem"

    def key(self, role: str) -> Path:
        return self.directory / f"{role}.key"

    @property
    def gateway_cert(self) -> Path:
        return self.cert("gateway")

    @property
    def gateway_key(self) -> Path:
        return self.key("gateway")

    @property
    def shard_cert(self) -> Path:
        return self.cert("shard")

    @property
    def shard_key(self) -> Path:
        return self.key("shard")

    @property
    def paths(self) -> tuple[Path, ...]:
        leaves = [p for role in ROLES for p in (self.cert(role), self.key(role))]
        return (self.ca_cert, self.ca_key, *leaves)

    @property
    def kept(self) -> tuple[Path, ...]:
        return tuple(p for p in self.paths if p not in self.created)

    def describe(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "ca_cert": str(self.ca_cert),
            "ca_key": str(self.ca_key),
            "gateway_cert": str(self.gateway_cert),
            "gateway_key": str(self.gateway_key),
            "shard_cert": str(self.shard_cert),
            "shard_key": str(self.shard_key),
            "created": [str(p) for p in self.created],
            "kept": [str(p) for p in self.kept],
            "missing_names": list(self.missing_names),
        }


def init_certs(directory: Path, extra_names: Iterable[str] = (), force: bool = False) -> CertFiles:
    """Create whatever is missing in ``directory``; with ``force``, replace everything.

    Existing files are kept, except that a new CA (when ``ca.pem`` is missing) means new leaf
    certificates, and a leaf missing its certificate or key gets a new pair. Leaf names are
    localhost, 127.0.0.1, ::1, this host's name and ``extra_names`` (DNS names or IPs).
    """
    files = CertFiles(directory)
    extras = _unique(extra_names)
    names = _unique(["localhost", "127.0.0.1", "::1", socket.gethostname(), *extras])
    sans = [_general_name(n) for n in names]  # a bad name fails before anything is written
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    created: list[Path] = []
    new_ca = force or not files.ca_cert.exists()
    stale = [r for r in ROLES if new_ca or not (files.cert(r).exists() and files.key(r).exists())]
    if new_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca_certificate(ca_key)
        _write(files.ca_key, _key_pem(ca_key), 0o600)
        _write(files.ca_cert, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        created += [files.ca_cert, files.ca_key]
    elif stale:
        ca, ca_key = _load_ca(files)
    for role in stale:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf_certificate(role, key, ca, ca_key, sans)
        _write(files.key(role), _key_pem(key), 0o600)
        _write(files.cert(role), cert.public_bytes(serialization.Encoding.PEM), 0o644)
        created += [files.cert(role), files.key(role)]
    missing = [n for r in ROLES if r not in stale for n in _lacking(files.cert(r), extras)]
    return CertFiles(directory, tuple(created), tuple(_unique(missing)))


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    # A name of its own, so that two installations' CAs side by side in a trust store differ.
    name = _name(f"shardgate private CA {secrets.token_hex(4)}")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    role: str,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"shardgate {role}"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _load_ca(files: CertFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not files.ca_key.exists():
        raise CertError(
            f"{files.ca_key} is missing, so no new certificate can be signed "
            "(use --force to start over with a new CA)"
        )
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{files.ca_key} is not an EC private key")
    return ca, key


def _lacking(cert_file: Path, names: list[str]) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [n for n in names if _general_name(n) not in sans]


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name or not name.isascii() or any(c.isspace() or c in "/:@" for c in name):
        raise CertError(f"'{name}' is neither a host name nor an IP address")
    return x509.DNSName(name.lower())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shardgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all; a key is never readable by others, not even briefly."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
