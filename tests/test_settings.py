"""Settings: file, then environment, then flags; every problem reported on its own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardgate.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8080, Path("var"))
    assert settings.model("smollm2-135m-instruct") is not None
    assert settings.models_dir == Path("var/models")


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "shardgate.yaml"
    config.write_text("port: 9000\nengine:\n  max_batch_size: 4\n  dtype: float32\n")
    env = {
        "SHARDGATE_PORT": "9001",
        "SHARDGATE_ENGINE__MAX_BATCH_SIZE": "8",
        "SHARDGATE_BOOTSTRAP_KEY": "123456",
        "OTHER": "x",
    }
    settings = load_settings(config, environ=env)
    assert settings.port == 9001
    assert settings.engine.max_batch_size == 8
    assert settings.bootstrap_key is not None
    assert settings.bootstrap_key.get_secret_value() == "123456"  # kept as a string
    assert load_settings(config, {"port": 9002}, environ=env).port == 9002


def test_shards_from_an_inline_environment_value() -> None:
    env = {"SHARDGATE_SHARDS": '[{url: "http://127.0.0.1:9100/", models: [m]}]'}
    shard = load_settings(environ=env).shards[0]
    assert shard.url == "http://127.0.0.1:9100" and shard.models == ("m",)


def test_each_problem_gets_one_line(tmp_path: Path) -> None:
    env = {
        "SHARDGATE_PORT": "eighty",
        "SHARDGATE_ENGINE__MAX_BATCH_SIZE": "0",
        "SHARDGATE_NO_SUCH_THING": "1",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=env)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("invalid setting port:") for line in lines)
    assert any("engine.max_batch_size" in line for line in lines)
    assert any("no_such_thing" in line for line in lines)


@pytest.mark.parametrize("text", ["port: [1, 2", "- a list"])
def test_bad_config_files(tmp_path: Path, text: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
