"""``shardgate up --tls``: certificates made on first start, TLS 1.3 outside, mutual TLS inside."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import openai

from shardgate.security import CertFiles, client_context
from shardgate.serve import free_port
from tests.conftest import CHAT_MODEL, start
from tests.security.conftest import KEY, exchange, https, port_of, wait_ready_tls

# The content filter is off: the fake engine's "fake fake" reads as harmful to the output
# monitor, and TLS is what this test is about (tests/e2e/test_safety.py covers the filter).
FAKE_STACK = f"""
safety: {{enabled: false}}
models:
  - {{name: {CHAT_MODEL}, kind: chat, engine: fake}}
up_shards:
  - {{models: [{CHAT_MODEL}]}}
"""


def test_up_with_tls(tmp_path: Path) -> None:
    config = tmp_path / "shardgate.yaml"
    config.write_text(FAKE_STACK)
    data = tmp_path / "data"
    up = https(
        start(
            ["up", "--tls", "--config", str(config), "--data-dir", str(data)],
            tmp_path,
            free_port(),
            env={"SHARDGATE_BOOTSTRAP_KEY": KEY},
        )
    )
    certs = CertFiles(data / "certs")
    try:
        deadline = time.monotonic() + 30
        while not certs.ca_cert.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # up writes the certificates before it starts anything
        assert certs.ca_cert.exists(), up.output()
        ca = client_context(certs.ca_cert)
        wait_ready_tls(up, ca)
        with openai.DefaultHttpxClient(verify=ca) as http:
            client = openai.OpenAI(base_url=up.url + "/v1", api_key=KEY, http_client=http)
            reply = client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
            assert reply.choices[0].message.content == "fake fake "
            metrics = http.get(up.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        shard = re.search(r'^shardgate_shard_up\{shard="(https://[^"]+)"\} 1\.0$', metrics, re.M)
        assert shard is not None, metrics
        # The shard answers nobody without a client certificate from the private CA.
        shard_port = urlsplit(shard[1]).port
        assert shard_port is not None and exchange(shard_port, ca)[1] == b""
    finally:
        up.stop()
    assert f"gateway on https://127.0.0.1:{port_of(up)}" in up.output()
