"""Configurations that would send traffic in clear text off this host refuse to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardgate.serve import free_port


def shardgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHARDGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "shardgate", *args, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints, after checking that it is exactly that."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_gateway_refuses_a_remote_shard_over_http(tmp_path: Path) -> None:
    line = refused(
        shardgate("gateway", "--data-dir", str(tmp_path), "--shard", "http://10.0.0.5:9000")
    )
    assert line == (
        "shardgate: shard http://10.0.0.5:9000 is not on loopback: "
        "use https:// and mutual TLS (shard_tls)"
    )


def test_gateway_refuses_a_remote_shard_without_mutual_tls(tmp_path: Path) -> None:
    args = ["gateway", "--data-dir", str(tmp_path), "--shard", "https://shard.internal:9000"]
    assert "set shard_tls.ca_file, gateway_cert_file and gateway_key_file" in refused(
        shardgate(*args)
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_shard_refuses_to_listen_off_loopback_without_mutual_tls(host: str, tmp_path: Path) -> None:
    args = ["shard", "--engine", "fake", "--models", "smollm2-135m-instruct", "--host", host]
    assert refused(shardgate(*args, "--data-dir", str(tmp_path))) == (
        f"shardgate: a shard listening on {host} (not loopback) needs mutual TLS: "
        "set shard_tls.ca_file, shard_cert_file and shard_key_file"
    )


def test_gateway_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    env = {"SHARDGATE_TLS__CERT_FILE": str(tmp_path / "gateway.pem")}
    assert refused(shardgate("gateway", "--data-dir", str(tmp_path), env=env)) == (
        "shardgate: invalid setting tls: Value error, cert_file and key_file must be given together"
    )
