"""The private CA: files, modes, idempotence, and certificates that chain to it."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from shardgate.cli import main
from shardgate.security import CertError, CertFiles, init_certs


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Modes come from the code alone, not from a umask that would narrow them."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_files_and_keys_are_private(tmp_path: Path, no_umask: None) -> None:
    files = init_certs(tmp_path / "certs")
    assert [p.name for p in files.paths] == [
        "ca.pem",
        "ca.key",
        "gateway.pem",
        "gateway.key",
        "shard.pem",
        "shard.key",
    ]
    assert set(files.created) == set(files.paths) and files.kept == ()
    assert mode(tmp_path / "certs") == 0o700
    for path in files.paths:
        assert mode(path) == (0o600 if path.suffix == ".key" else 0o644), path
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == sorted(
        p.name for p in files.paths
    )  # no temporary files left behind


def test_a_second_run_keeps_everything(tmp_path: Path) -> None:
    first = init_certs(tmp_path)
    before = {p: p.read_bytes() for p in first.paths}
    second = init_certs(tmp_path)
    assert second.created == () and second.kept == first.paths
    assert {p: p.read_bytes() for p in second.paths} == before
    forced = init_certs(tmp_path, force=True)
    assert set(forced.created) == set(first.paths)
    assert all(p.read_bytes() != before[p] for p in forced.paths)


def test_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    files = init_certs(tmp_path, ["gateway.example", "10.1.2.3"])
    ca = load(files.ca_cert)
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    for cert_file in (files.gateway_cert, files.shard_cert):
        cert = load(cert_file)
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        purposes = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert purposes == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(sans.get_values_for_type(x509.DNSName))
        assert {"localhost", socket.gethostname().lower(), "gateway.example"} <= names
        ips = set(sans.get_values_for_type(x509.IPAddress))
        assert {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")} <= ips
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 820 <= lifetime.days <= 830
    foreign = load(init_certs(tmp_path / "other").ca_cert)
    with pytest.raises((ValueError, InvalidSignature)):
        load(files.gateway_cert).verify_directly_issued_by(foreign)


def test_a_lost_leaf_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    files = init_certs(tmp_path)
    ca_before = files.ca_cert.read_bytes()
    files.shard_key.unlink()
    again = init_certs(tmp_path)
    assert set(again.created) == {files.shard_cert, files.shard_key}
    assert files.ca_cert.read_bytes() == ca_before
    load(files.shard_cert).verify_directly_issued_by(load(files.ca_cert))


def test_a_new_ca_means_new_leaves(tmp_path: Path) -> None:
    files = init_certs(tmp_path)
    files.ca_cert.unlink()
    assert set(init_certs(tmp_path).created) == set(files.paths)
    load(files.gateway_cert).verify_directly_issued_by(load(files.ca_cert))


def test_no_ca_key_no_new_leaf(tmp_path: Path) -> None:
    files = init_certs(tmp_path)
    files.ca_key.unlink()  # an operator may keep the CA key offline
    assert init_certs(tmp_path).created == ()
    files.gateway_cert.unlink()
    with pytest.raises(CertError, match=r"ca\.key is missing"):
        init_certs(tmp_path)


def test_names_asked_for_but_missing_are_reported(tmp_path: Path) -> None:
    init_certs(tmp_path)
    kept = init_certs(tmp_path, ["new.example", "localhost"])
    assert kept.created == () and kept.missing_names == ("new.example",)


def test_a_bad_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="neither a host name nor an IP"):
        init_certs(tmp_path / "certs", ["not a name"])
    assert not (tmp_path / "certs").exists()


def test_certs_init_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["certs", "init", "--data-dir", str(tmp_path), "--san", "gw.example", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    files = CertFiles(tmp_path / "certs")
    assert report["ca_cert"] == str(files.ca_cert) and len(report["created"]) == 6
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == [str(p) for p in files.paths]
    assert main(["certs", "init", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kept", str(files.ca_cert)] and len(lines) == 6
    assert main(["certs", "init", "--data-dir", str(tmp_path), "--force"]) == 0
    assert all(line.startswith("created ") for line in capsys.readouterr().out.splitlines())
