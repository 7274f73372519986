"""When TLS is required, and how its settings reach the contexts and ``up``'s children."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shardgate.security import (
    CertFiles,
    check_shard_urls,
    client_context,
    gateway_listener,
    init_certs,
    is_loopback,
    server_context,
    shard_client_ssl,
    shard_listener,
    with_certs,
)
from shardgate.settings import Settings, SettingsError, load_settings
from shardgate.supervisor import plan_children


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return init_certs(tmp_path_factory.mktemp("certs"))


def settings(**values: object) -> Settings:
    return load_settings(overrides=values, environ={})


def mutual(certs: CertFiles, enabled: bool = False) -> dict[str, object]:
    return {
        "enabled": enabled,
        "ca_file": certs.ca_cert,
        "gateway_cert_file": certs.gateway_cert,
        "gateway_key_file": certs.gateway_key,
        "shard_cert_file": certs.shard_cert,
        "shard_key_file": certs.shard_key,
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARDGATE_TLS__CERT_FILE": "/a.pem"}, "cert_file and key_file must be given together"),
        (
            {"SHARDGATE_SHARD_TLS__GATEWAY_KEY_FILE": "/a.key"},
            "gateway_cert_file and gateway_key_file must be given together",
        ),
    ],
)
def test_a_certificate_needs_its_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=env)
    assert len(str(caught.value).splitlines()) == 1 and message in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("shard.internal", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"]
)
def test_loopback_shards_may_use_plain_http(url: str) -> None:
    check_shard_urls(settings(shards=[{"url": url}]))


@pytest.mark.parametrize(
    ("url", "enabled", "problem"),
    [
        ("http://10.0.0.5:9000", False, "is not on loopback: use https://"),
        ("https://10.0.0.5:9000", False, "is not on loopback: set shard_tls.ca_file"),
        ("http://127.0.0.1:9000", True, "shard_tls.enabled needs shard_tls.ca_file"),
    ],
)
def test_shards_that_need_mutual_tls(url: str, enabled: bool, problem: str) -> None:
    config = settings(shards=[{"url": url}], shard_tls={"enabled": enabled})
    with pytest.raises(SettingsError, match=problem):
        check_shard_urls(config)


def test_remote_shards_with_mutual_tls(certs: CertFiles) -> None:
    config = settings(shards=[{"url": "https://10.0.0.5:9000"}], shard_tls=mutual(certs))
    check_shard_urls(config)
    context = shard_client_ssl(config)
    assert context is not None and context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    clear = settings(shards=[{"url": "http://127.0.0.1:9000"}], shard_tls=mutual(certs, True))
    with pytest.raises(SettingsError, match=r"in clear text but shard_tls\.enabled"):
        check_shard_urls(clear)


def test_shard_listener(certs: CertFiles) -> None:
    assert shard_listener(settings(host="127.0.0.1")) is None
    with pytest.raises(SettingsError, match=r"listening on 0\.0\.0\.0 \(not loopback\) needs"):
        shard_listener(settings(host="0.0.0.0"))
    with pytest.raises(SettingsError, match=r"shard_tls\.enabled needs mutual TLS"):
        shard_listener(settings(shard_tls={"enabled": True}))
    listener = shard_listener(settings(host="0.0.0.0", shard_tls=mutual(certs)))
    assert listener is not None and listener.client_ca == certs.ca_cert
    context = server_context(listener)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3


def test_gateway_listener_files_are_checked_at_start(certs: CertFiles, tmp_path: Path) -> None:
    assert gateway_listener(settings()) is None
    good = {"cert_file": certs.gateway_cert, "key_file": certs.gateway_key}
    listener = gateway_listener(settings(tls=good))
    assert listener is not None and listener.client_ca is None
    with pytest.raises(SettingsError, match=r"^tls\.key_file: no file at "):
        gateway_listener(settings(tls={**good, "key_file": tmp_path / "nope.key"}))
    with pytest.raises(SettingsError, match=r"cannot load the tls certificates: .*KEY_VALUES"):
        gateway_listener(settings(tls={**good, "key_file": certs.shard_key}))


def test_client_context_trusts_only_the_private_ca(certs: CertFiles) -> None:
    (ca,) = client_context(certs.ca_cert).get_ca_certs()
    assert "shardgate private CA" in str(ca["subject"])


def test_up_hands_each_child_its_tls_files(certs: CertFiles) -> None:
    base = settings(up_shards=[{"models": ["smollm2-135m-instruct"], "port": 9123}])
    plain, urls = plan_children(base, None)
    assert urls == ["http://127.0.0.1:9123"]
    assert not any("TLS" in k for c in plain for k in c.env)
    children, urls = plan_children(with_certs(base, certs), None)
    assert urls == ["https://127.0.0.1:9123"]
    shard, gateway = children
    from_shard = load_settings(environ=shard.env)
    assert from_shard.shard_tls.enabled and from_shard.shard_tls.ca_file == certs.ca_cert.resolve()
    assert from_shard.shard_tls.shard_key_file == certs.shard_key.resolve()
    assert from_shard.shard_tls.gateway_key_file is None  # a shard never sees the gateway's key
    from_gateway = load_settings(environ=gateway.env)
    assert from_gateway.tls.cert_file == certs.gateway_cert.resolve()
    assert from_gateway.shard_tls.gateway_key_file == certs.gateway_key.resolve()
    assert from_gateway.shard_tls.shard_key_file is None
    assert [s.url for s in from_gateway.shards] == urls
    check_shard_urls(from_gateway)
    assert shard_listener(from_shard) is not None
