"""Real processes: a TLS 1.3 gateway in front of a fake shard under mutual TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from shardgate.routing import ShardClient
from shardgate.security import CertFiles, client_context, init_certs
from shardgate.serve import free_port
from tests.conftest import CHAT_MODEL, Proc, start
from tests.security.conftest import (
    KEY,
    exchange,
    gateway_env,
    https,
    port_of,
    shard_env,
    wait_ready_tls,
)


@pytest.fixture(scope="module")
def certs(module_tmp: Path) -> CertFiles:
    return init_certs(module_tmp / "certs")


@pytest.fixture(scope="module")
def foreign(module_tmp: Path) -> CertFiles:
    """Another CA, with a certificate just as valid, but not trusted by the stack."""
    return init_certs(module_tmp / "foreign")


@pytest.fixture(scope="module")
def stack(module_tmp: Path, certs: CertFiles) -> Iterator[tuple[Proc, Proc]]:
    """(gateway, shard), both https."""
    data = str(module_tmp / "data")
    shard = https(
        start(
            ["shard", "--engine", "fake", "--models", CHAT_MODEL, "--data-dir", data],
            module_tmp,
            free_port(),
            env=shard_env(certs),
        )
    )
    gateway = https(
        start(
            ["gateway", "--data-dir", data, "--shard", shard.url],
            module_tmp,
            free_port(),
            env=gateway_env(certs),
        )
    )
    try:
        wait_ready_tls(shard, client_context(certs.ca_cert, certs.gateway_cert, certs.gateway_key))
        wait_ready_tls(gateway, client_context(certs.ca_cert))
        yield gateway, shard
    finally:
        gateway.stop()
        shard.stop()


def tls12_only(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_gateway_speaks_tls13(stack: tuple[Proc, Proc], certs: CertFiles) -> None:
    version, reply = exchange(port_of(stack[0]), client_context(certs.ca_cert))
    assert version == "TLSv1.3" and reply.startswith(b"HTTP/1.1 200 ")


def test_gateway_refuses_tls12(stack: tuple[Proc, Proc], certs: CertFiles) -> None:
    with pytest.raises(ssl.SSLError):
        exchange(port_of(stack[0]), tls12_only(client_context(certs.ca_cert)))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_openssl_agrees(stack: tuple[Proc, Proc], certs: CertFiles) -> None:
    def s_client(version: str) -> subprocess.CompletedProcess[str]:
        address = f"127.0.0.1:{port_of(stack[0])}"
        ca = str(certs.ca_cert)
        return subprocess.run(
            ["openssl", "s_client", "-brief", "-connect", address, version, "-CAfile", ca],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )

    assert s_client("-tls1_2").returncode != 0
    accepted = s_client("-tls1_3")
    output = accepted.stdout + accepted.stderr
    assert accepted.returncode == 0, output
    assert "Protocol version: TLSv1.3" in output and "Verification: OK" in output


def test_openai_client_chats_through_both_tls_hops(
    stack: tuple[Proc, Proc], certs: CertFiles
) -> None:
    """The client verifies the gateway; the gateway and the shard verify each other."""
    with openai.DefaultHttpxClient(verify=client_context(certs.ca_cert)) as http:
        client = openai.OpenAI(
            base_url=stack[0].url + "/v1", api_key=KEY, http_client=http, max_retries=0
        )
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": "Hello?"}
        ]
        reply = client.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=3)
        assert reply.choices[0].message.content == "fake fake fake "
        assert reply.usage is not None and reply.usage.completion_tokens == 3
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=messages, max_tokens=2, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "fake fake "


def test_shard_refuses_a_client_without_certificate(
    stack: tuple[Proc, Proc], certs: CertFiles
) -> None:
    # Under TLS 1.3 the client finishes its handshake before the server has checked its
    # certificate, so the refusal shows as a closed connection, not a failed handshake.
    version, reply = exchange(port_of(stack[1]), client_context(certs.ca_cert))
    assert version == "TLSv1.3" and reply == b""


def test_shard_refuses_a_certificate_from_another_ca(
    stack: tuple[Proc, Proc], certs: CertFiles, foreign: CertFiles
) -> None:
    context = client_context(certs.ca_cert, foreign.gateway_cert, foreign.gateway_key)
    assert exchange(port_of(stack[1]), context)[1] == b""


def test_shard_serves_the_gateway_certificate(stack: tuple[Proc, Proc], certs: CertFiles) -> None:
    context = client_context(certs.ca_cert, certs.gateway_cert, certs.gateway_key)
    with httpx.Client(verify=context) as client:
        assert client.get(stack[1].url + "/readyz").status_code == 200
    with pytest.raises(ssl.SSLError):
        exchange(port_of(stack[1]), tls12_only(context))


async def test_gateway_client_checks_the_shard_too(
    stack: tuple[Proc, Proc], certs: CertFiles, foreign: CertFiles
) -> None:
    ours = client_context(certs.ca_cert, certs.gateway_cert, certs.gateway_key)
    # Trusting another CA, the gateway cannot verify the shard and treats it as down.
    theirs = client_context(foreign.ca_cert, certs.gateway_cert, certs.gateway_key)
    for context, expected in [(ours, (True, [CHAT_MODEL])), (theirs, None)]:
        client = ShardClient(2.0, 5.0, context)
        try:
            assert await client.probe(stack[1].url) == expected
        finally:
            await client.close()
