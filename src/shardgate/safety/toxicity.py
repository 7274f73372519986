"""Toxicity detector: the ``toxic-comment-classifier`` 0.3.0 BiLSTM, ported from Keras to numpy.

The original (MIT, Md Irfan Ali) is a Keras 3 model trained on the Jigsaw toxic comments data:
``Embedding(20000, 50)`` → ``Bidirectional(LSTM(50, return_sequences=True))`` →
``GlobalMaxPooling1D`` → ``Dense(50, relu)`` → ``Dense(6, sigmoid)``, fed by a Keras
``Tokenizer`` (lowercase, punctuation to spaces, split on ``" "``, the 19,999 most frequent
words, unknown words dropped) and ``pad_sequences(maxlen=100)``, which pads *and truncates at
the front*: a text longer than 100 known words is scored on its last 100.

The weights come from the installed package (``make`` installs it without its TensorFlow
dependencies). On first use ``convert_keras_package`` turns its h5 file and tokenizer pickle
into ``toxicity.npz`` in a cache directory (ignored by git, like converted chat models);
after that, running needs only numpy. Scoring is CPU-bound (about 2 ms per text): call it
from a worker thread.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardgate.safety.base import Finding

__all__ = [
    "CACHE_FILE",
    "LABELS",
    "BiLstmClassifier",
    "ToxicityDetector",
    "WordTokenizer",
    "cached_weights",
]

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
CACHE_FILE = "toxicity.npz"
PACKAGE = "toxic_classifier"  # the import name of toxic-comment-classifier 0.3.0
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_BATCH = 128  # bounds the (batch, 100, 200) gate buffer to ~10 MB

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WordTokenizer:
    """Keras' legacy ``Tokenizer.texts_to_sequences`` followed by ``pad_sequences``."""

    word_index: Mapping[str, int]  # word -> id in [1, vocab); id 0 is padding
    filters: str = KERAS_FILTERS
    maxlen: int = 100

    def encode(self, texts: Sequence[str]) -> Ints:
        """Ids ``(len(texts), maxlen)``, left-padded with 0, keeping each text's last words."""
        table = str.maketrans(dict.fromkeys(self.filters, " "))
        out = np.zeros((len(texts), self.maxlen), np.int64)
        for row, text in enumerate(texts):
            words = text.lower().translate(table).split(" ")
            ids = [i for w in words if w and (i := self.word_index.get(w)) is not None]
            ids = ids[-self.maxlen :]
            if ids:
                out[row, self.maxlen - len(ids) :] = ids
        return out


@dataclass(frozen=True)
class LstmWeights:
    """Keras LSTM layout: gates ``[i, f, c, o]`` along the last axis of each matrix."""

    kernel: Floats  # (input, 4 * units)
    recurrent: Floats  # (units, 4 * units)
    bias: Floats  # (4 * units,)


@dataclass(frozen=True)
class BiLstmClassifier:
    embedding: Floats  # (vocab, 50)
    forward_lstm: LstmWeights
    backward_lstm: LstmWeights
    hidden_weight: Floats  # (100, 50)
    hidden_bias: Floats
    output_weight: Floats  # (50, 6)
    output_bias: Floats

    def predict(self, ids: Ints) -> Floats:
        """Label probabilities ``(batch, 6)`` for padded id rows ``(batch, time)``."""
        x = self.embedding[ids]
        pooled = self._bilstm_max(x)
        hidden = np.maximum(pooled @ self.hidden_weight + self.hidden_bias, 0.0)
        return _sigmoid(hidden @ self.output_weight + self.output_bias)

    def _bilstm_max(self, x: Floats) -> Floats:
        """Both LSTM directions stepped together, max-pooled over time: ``(batch, 2 * units)``.

        The backward layer reads the sequence reversed; the order in which outputs arrive does
        not matter to a max over time, so they are never flipped back.
        """
        fw, bw = self.forward_lstm, self.backward_lstm
        units = fw.recurrent.shape[0]
        # Gate columns reordered [i, f, c, o] -> [i, f, o, c]: one sigmoid call covers three.
        order = np.r_[0 : 2 * units, 3 * units : 4 * units, 2 * units : 3 * units]
        gates_in = np.stack(
            [
                x @ fw.kernel[:, order] + fw.bias[order],
                x[:, ::-1] @ bw.kernel[:, order] + bw.bias[order],
            ]
        )  # (2, batch, time, 4 * units)
        recurrent = np.stack([fw.recurrent[:, order], bw.recurrent[:, order]])
        h = np.zeros((2, x.shape[0], units), np.float32)
        c = np.zeros_like(h)
        pooled = np.full_like(h, -np.inf)
        for t in range(x.shape[1]):
            z = gates_in[:, :, t] + h @ recurrent
            ifo = _sigmoid(z[..., : 3 * units])
            c = ifo[..., units : 2 * units] * c + ifo[..., :units] * np.tanh(z[..., 3 * units :])
            h = ifo[..., 2 * units :] * np.tanh(c)
            np.maximum(pooled, h, out=pooled)
        return np.concatenate([pooled[0], pooled[1]], axis=1)


class ToxicityDetector:
    """Scores texts on the six Jigsaw labels; ``scan`` flags labels at or over a threshold."""

    name = "toxicity"

    def __init__(
        self,
        tokenizer: WordTokenizer,
        model: BiLstmClassifier,
        threshold: float = 0.5,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        unknown = set(label_thresholds or {}) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown toxicity labels: {sorted(unknown)}")
        self._tokenizer = tokenizer
        self._model = model
        self._thresholds = {label: threshold for label in LABELS} | dict(label_thresholds or {})

    @classmethod
    def load(
        cls,
        cache_dir: Path,
        threshold: float = 0.5,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> ToxicityDetector:
        """The detector, converting the package's weights into ``cache_dir`` on first use."""
        tokenizer, model = load_weights(cached_weights(cache_dir))
        return cls(tokenizer, model, threshold, label_thresholds)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Probability per label for each text, in input order."""
        out: list[dict[str, float]] = []
        for start in range(0, len(texts), _BATCH):
            probs = self._model.predict(self._tokenizer.encode(texts[start : start + _BATCH]))
            out.extend(dict(zip(LABELS, row, strict=True)) for row in probs.tolist())
        return out

    def scan(self, text: str) -> list[Finding]:
        """One ``toxicity.<label>`` finding spanning the whole text per label over threshold."""
        (scores,) = self.scores([text])
        return [
            Finding(f"toxicity.{label}", 0, len(text), score)
            for label, score in scores.items()
            if score >= self._thresholds[label]
        ]


def cached_weights(cache_dir: Path) -> Path:
    """``cache_dir/toxicity.npz``, converted from the installed package if it is missing."""
    path = cache_dir / CACHE_FILE
    if path.is_file():
        return path
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the toxicity model needs the package toxic-comment-classifier==0.3.0 "
            "(pip install --no-deps toxic-comment-classifier==0.3.0)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial.npz")
    convert_keras_package(Path(next(iter(spec.submodule_search_locations))), partial)
    partial.replace(path)  # atomic: a concurrent first use converts twice, harmlessly
    return path


def load_weights(path: Path) -> tuple[WordTokenizer, BiLstmClassifier]:
    with np.load(path, allow_pickle=False) as npz:
        a = {key: npz[key] for key in npz.files}
    vocab = [str(w) for w in a["vocab"]]
    tokenizer = WordTokenizer(
        word_index={w: i for i, w in enumerate(vocab, start=1)},
        filters=str(a["filters"]),
        maxlen=int(a["maxlen"]),
    )
    f32 = {k: v.astype(np.float32) for k, v in a.items() if v.dtype.kind == "f"}
    model = BiLstmClassifier(
        embedding=f32["embedding"],
        forward_lstm=LstmWeights(f32["fw_kernel"], f32["fw_recurrent"], f32["fw_bias"]),
        backward_lstm=LstmWeights(f32["bw_kernel"], f32["bw_recurrent"], f32["bw_bias"]),
        hidden_weight=f32["dense_kernel"],
        hidden_bias=f32["dense_bias"],
        output_weight=f32["out_kernel"],
        output_bias=f32["out_bias"],
    )
    return tokenizer, model


def _sigmoid(x: Floats) -> Floats:
    # tanh form: exact, and free of the overflow warning 1 / (1 + exp(-x)) gives for x << 0
    out: Floats = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
    return out


# --- conversion from the installed package (h5py; once, into the cache) ---

_H5_LAYERS = {
    "embedding": "layers/embedding/vars/0",
    "fw_kernel": "layers/bidirectional/forward_layer/cell/vars/0",
    "fw_recurrent": "layers/bidirectional/forward_layer/cell/vars/1",
    "fw_bias": "layers/bidirectional/forward_layer/cell/vars/2",
    "bw_kernel": "layers/bidirectional/backward_layer/cell/vars/0",
    "bw_recurrent": "layers/bidirectional/backward_layer/cell/vars/1",
    "bw_bias": "layers/bidirectional/backward_layer/cell/vars/2",
    "dense_kernel": "layers/dense/vars/0",
    "dense_bias": "layers/dense/vars/1",
    "out_kernel": "layers/dense_1/vars/0",
    "out_bias": "layers/dense_1/vars/1",
}


class _TokenizerState:
    """Stands in for ``keras...text.Tokenizer`` so its pickle loads without Keras."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _TokenizerUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("builtins", "int"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if name == "Tokenizer" and module.startswith(("keras", "tensorflow")):
            return _TokenizerState
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def convert_keras_package(package_dir: Path, out: Path) -> None:
    """Write ``out`` from an unpacked ``toxic_classifier`` package (its ``model/`` folder)."""
    import h5py  # type: ignore[import-untyped,import-not-found,unused-ignore]

    model_dir = package_dir / "model"
    state = _TokenizerUnpickler(io.BytesIO((model_dir / "tokenizer.pickle").read_bytes())).load()
    tok: dict[str, Any] = state.__dict__
    if tok["split"] != " " or not tok["lower"] or tok["char_level"] or tok["oov_token"]:
        raise ValueError("tokenizer settings differ from the ones this port implements")
    index_word: dict[int, str] = tok["index_word"]
    vocab = [index_word[i] for i in range(1, tok["num_words"])]
    with h5py.File(model_dir / "model.weights.h5", "r") as h5:
        arrays: dict[str, npt.NDArray[Any]] = {
            key: np.asarray(h5[path], np.float32) for key, path in _H5_LAYERS.items()
        }
    if arrays["embedding"].shape[0] != tok["num_words"]:
        raise ValueError("embedding rows do not match the tokenizer's num_words")
    arrays |= {
        "vocab": np.array(vocab),
        "filters": np.array(tok["filters"]),
        "maxlen": np.array(100),
    }
    np.savez_compressed(out, allow_pickle=False, **arrays)
