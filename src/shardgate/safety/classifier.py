"""Trained prompt-injection and harmful-request detectors: linear heads over MiniLM embeddings.

Each detector is a logistic regression over the mean-pooled, normalised all-MiniLM-L6-v2
embedding of a text, shipped as a small ``.npz`` in ``weights/`` with its decision threshold
(``scripts/train_safety.py`` trains them; ``bench/safety_eval.py`` measures them). A long
text is embedded in up to ``max_chunks`` 256-token chunks and scores as its worst chunk.
The harmful-request detector also has one-vs-rest category heads; a category's score is
P(harmful) times P(category | harmful).

Scoring is CPU-bound (tens of milliseconds per KB of text): call ``classify`` from a worker
thread, not from the event loop. Only the embedder uses torch; the heads are numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "DETECTORS",
    "WEIGHTS_DIR",
    "ChunkEmbedder",
    "Detection",
    "LinearHead",
    "SafetyClassifier",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DETECTORS = ("injection", "harmful")

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


class ChunkEmbedder(Protocol):
    """Embeds texts chunk by chunk; ``owner[i]`` is the index of the text of vector ``i``."""

    model_name: str

    def embed_chunks(self, texts: Sequence[str], max_chunks: int = 1) -> tuple[Floats, Ints]: ...


@dataclass(frozen=True)
class LinearHead:
    """One detector's weights, as written by ``scripts/train_safety.py``."""

    name: str
    labels: tuple[str, str]  # (negative, positive)
    weight: Floats  # (dim,)
    bias: float
    threshold: float
    max_chunks: int
    embedding_model: str
    data_sha256: str
    categories: tuple[str, ...] = ()
    category_weight: Floats = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    category_bias: Floats = field(default_factory=lambda: np.zeros(0, np.float32))

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path, allow_pickle=False) as npz:
            labels = tuple(str(x) for x in npz["labels"])
            if len(labels) != 2:
                raise ValueError(f"{path}: expected two labels, got {labels}")
            return cls(
                name=str(npz["name"]),
                labels=(labels[0], labels[1]),
                weight=npz["weight"].astype(np.float32),
                bias=float(npz["bias"]),
                threshold=float(npz["threshold"]),
                max_chunks=int(npz["max_chunks"]),
                embedding_model=str(npz["embedding_model"]),
                data_sha256=str(npz["data_sha256"]),
                categories=tuple(str(x) for x in npz["categories"]),
                category_weight=npz["category_weight"].astype(np.float32),
                category_bias=npz["category_bias"].astype(np.float32),
            )

    def probabilities(self, vectors: Floats, owner: Ints, n_texts: int) -> Floats:
        """P(positive) per text: the maximum over its first ``max_chunks`` chunks."""
        keep = chunk_rank(owner) < self.max_chunks
        chunk_p = _sigmoid(vectors[keep] @ self.weight + self.bias)
        out = np.zeros(n_texts, np.float32)
        np.maximum.at(out, owner[keep], chunk_p)
        return out

    def category_probabilities(self, vectors: Floats, owner: Ints, n_texts: int) -> Floats:
        """P(category | positive) per text ``(n_texts, n_categories)``, from its worst chunk."""
        keep = np.flatnonzero(chunk_rank(owner) < self.max_chunks)
        chunk_p = _sigmoid(vectors[keep] @ self.weight + self.bias)
        worst = np.full(n_texts, -1, np.int64)
        best_p = np.full(n_texts, -1.0, np.float32)
        for i, p in zip(keep.tolist(), chunk_p.tolist(), strict=True):
            if p > best_p[owner[i]]:
                best_p[owner[i]], worst[owner[i]] = p, i
        raw = _sigmoid(vectors[worst] @ self.category_weight.T + self.category_bias)
        norm: Floats = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1e-9)
        return norm.astype(np.float32)


@dataclass(frozen=True)
class Detection:
    detector: str
    score: float  # probability of the positive label
    threshold: float
    flagged: bool
    labels: Mapping[str, float]  # probability per label, e.g. {"benign": .., "injection": ..}
    categories: Mapping[str, float]  # P(positive and category); empty without category heads


class SafetyClassifier:
    """Scores texts with several detectors, embedding each text once."""

    def __init__(self, embedder: ChunkEmbedder, heads: Sequence[LinearHead]) -> None:
        for head in heads:
            if head.embedding_model != embedder.model_name:
                raise ValueError(
                    f"{head.name}: trained on {head.embedding_model}, "
                    f"embedder is {embedder.model_name}"
                )
        self._embedder = embedder
        self.heads = tuple(heads)

    @classmethod
    def load(
        cls,
        embedder: ChunkEmbedder | None = None,
        weights_dir: Path = WEIGHTS_DIR,
        detectors: Sequence[str] = DETECTORS,
    ) -> SafetyClassifier:
        heads = [LinearHead.load(weights_dir / f"{name}.npz") for name in detectors]
        if embedder is None:  # after the heads: a broken weights file fails in milliseconds
            from shardgate.safety.embedder import MiniLMEmbedder

            embedder = MiniLMEmbedder()
        return cls(embedder, heads)

    def classify(self, texts: Sequence[str]) -> list[dict[str, Detection]]:
        """Per text, the detection of every detector, keyed by detector name."""
        max_chunks = max((h.max_chunks for h in self.heads), default=1)
        vectors, owner = self._embedder.embed_chunks(texts, max_chunks)
        results: list[dict[str, Detection]] = [{} for _ in texts]
        for head in self.heads:
            scores = head.probabilities(vectors, owner, len(texts))
            cats = (
                head.category_probabilities(vectors, owner, len(texts))
                if head.categories
                else np.zeros((len(texts), 0), np.float32)
            )
            for i, p in enumerate(scores.tolist()):
                cat_p = zip(head.categories, cats[i].tolist(), strict=True)
                results[i][head.name] = Detection(
                    detector=head.name,
                    score=p,
                    threshold=head.threshold,
                    flagged=p >= head.threshold,
                    labels={head.labels[0]: 1.0 - p, head.labels[1]: p},
                    categories={c: p * q for c, q in cat_p},
                )
        return results


def chunk_rank(owner: Ints) -> Ints:
    """For each chunk, how many chunks of the same text come before it."""
    rank = np.zeros(len(owner), np.int64)
    seen: dict[int, int] = {}
    for i, text in enumerate(owner.tolist()):
        rank[i] = seen.get(text, 0)
        seen[text] = rank[i] + 1
    return rank


def _sigmoid(x: npt.NDArray[np.floating]) -> Floats:
    out: Floats = (1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))).astype(np.float32)
    return out
