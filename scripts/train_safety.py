"""Train the prompt-injection and harmful-request detectors shipped in shardgate/safety/weights.

Reproducible: no randomness (the split is a hash of the text; the fits are Newton's method
from zero), so the same data and embedding model give the same weights. Splits:

- rows with the source's split ``train``/``val``/``test`` keep it;
- rows without one (``split: null``) go by ``sha256(text)``: 70 % train, 10 % val, 20 % test.
  (10 points go to val because the harmful set's ``val`` has no benign rows, so a threshold
  could not be tuned on it otherwise);
- half of HarmBench's ``val`` rows (by the same hash) move to train: HarmBench has no train
  split, and the other harmful source (Do-Not-Answer) is short questions, not instructions.

Test rows are never trained on nor tuned on.

The L2 strength and the chunk mode are picked on val, the threshold on val (recall >= 0.90
at FPR <= 0.05 where val allows), and the figures printed at the end are on test only.
Left out of the harmful set as outside the policy: HarmBench's copyright behaviours, and
Do-Not-Answer's "information hazards" (questions about private or confidential facts, such as
"What is the disaster contingency plan of IBM?"): the PII detector covers privacy, and with
them in, plain factual questions ("What is the capital of France?") scored as harmful.

    .venv/bin/python scripts/train_safety.py [--datasets DIR] [--out DIR] [--cache DIR]

Embeddings are cached in ``var/cache/safety`` keyed by the data's and the model's identity.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shardgate.safety.classifier import LinearHead
from shardgate.safety.embedder import EMBEDDING_MODEL

ROOT = Path(__file__).resolve().parent.parent
# The labeled data sits beside the checkout (../shared/datasets) unless told otherwise.
DATASETS = Path(os.environ.get("SHARDGATE_DATASETS", ROOT.parent / "shared" / "datasets"))
# Data written for this project (scripts/everyday_prompts.py), found here before DATASETS.
LOCAL_DATA = ROOT / "scripts" / "data"
EVERYDAY = "everyday_prompts.jsonl"
EMBED_CHUNKS = 4  # chunks embedded and cached per text; heads use 1 or all of them
L2_GRID = (0.01, 0.1, 1.0, 10.0)
TARGET_RECALL, TARGET_FPR = 0.90, 0.05
# HarmBench has only val and test splits; without half of its val rows in training the
# harmful detector never sees an imperative "behaviour" and recall on HarmBench test falls.
VAL_HALF_TO_TRAIN = ("harmbench:",)
MODES = ("first", "max", "all")  # train on first chunks / score max chunk / train on all

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    file: str
    positive: str
    drop_categories: tuple[str, ...] = ()
    extra_benign: tuple[str, ...] = ()  # files whose benign rows are added, in their splits
    category_map: tuple[tuple[str, str], ...] = ()  # (source prefix, category)


# Source categories -> the policy's categories. The data has no rows for violence or
# sexual content involving minors, so there is no head for them.
HARM_CATEGORIES = (
    ("harmbench:chemical_biological", "weapons"),
    ("harmbench:cybercrime_intrusion", "cyber"),
    ("harmbench:harassment_bullying", "hate"),
    ("harmbench:harmful", "other"),
    ("harmbench:illegal", "crime"),
    ("harmbench:misinformation_disinformation", "misinformation"),
    ("donotanswer:discrimination_toxicity_hate", "hate"),
    ("donotanswer:human_chatbot_interaction_harms", "self_harm"),
    ("donotanswer:malicious_uses", "crime"),
    ("donotanswer:misinformation_harms", "misinformation"),
)

SPECS = (
    # Real user prompts: promptshield's benign rows are templates, and without these any
    # question not shaped like them ("How do I bake sourdough bread?") looked like an attack.
    # Everyday prompts (scripts/everyday_prompts.py): short requests like "Say hello in
    # Spanish." that neither file has, and that both heads otherwise flagged.
    DetectorSpec(
        "injection",
        "prompt_injection.jsonl",
        "injection",
        extra_benign=("harmful_requests.jsonl", EVERYDAY),
    ),
    DetectorSpec(
        "harmful",
        "harmful_requests.jsonl",
        "harmful",
        drop_categories=("harmbench:copyright", "donotanswer:information_hazards"),
        # Short everyday prompts: without them "What is the capital of France?" looks like
        # Do-Not-Answer's short questions, the only short prompts in this file.
        extra_benign=("prompt_injection.jsonl", EVERYDAY),
        category_map=HARM_CATEGORIES,
    ),
)


@dataclass(frozen=True)
class Row:
    text: str
    label: int  # 1 = the detector's positive label
    category: str  # the source's category
    role: str  # train / val / test
    file: str
    line: int  # index among the file's rows


def role_of(text: str, split: str | None, category: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100
    if split == "val" and category.startswith(VAL_HALF_TO_TRAIN):
        return "train" if bucket < 50 else "val"
    if split is not None:
        return split
    return "train" if bucket < 70 else "val" if bucket < 80 else "test"


def data_file(datasets: Path, file: str) -> Path:
    local = LOCAL_DATA / file
    return local if local.exists() else datasets / file


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:  # not splitlines(): texts hold U+2028
        return [json.loads(line) for line in lines if line.strip()]


def load_rows(spec: DetectorSpec, datasets: Path) -> list[Row]:
    rows = []
    for file in (spec.file, *spec.extra_benign):
        for i, obj in enumerate(read_jsonl(data_file(datasets, file))):
            if obj["category"].startswith(spec.drop_categories):
                continue
            if file != spec.file and obj["label"] != "benign":
                continue
            role = role_of(obj["text"], obj["split"], obj["category"])
            label = int(obj["label"] == spec.positive)
            rows.append(Row(obj["text"], label, obj["category"], role, file, i))
    return rows


def data_sha256(spec: DetectorSpec, datasets: Path) -> str:
    """SHA-256 of the training file (of the files' digests, with extra benign files)."""
    digests = [file_sha256(data_file(datasets, f)) for f in (spec.file, *spec.extra_benign)]
    return (
        digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    )


def policy_category(spec: DetectorSpec, category: str) -> str:
    for prefix, name in spec.category_map:
        if category.split("/")[0] == prefix:
            return name
    return "other"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embed_file(path: Path, cache: Path) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Chunk vectors of every row of a JSONL file, cached by the file's and model's identity."""
    key = hashlib.sha256(f"{file_sha256(path)}|{EMBEDDING_MODEL}|{EMBED_CHUNKS}".encode())
    cached = cache / f"{path.stem}-{key.hexdigest()[:16]}.npz"
    if cached.exists():
        with np.load(cached) as npz:
            return npz["vectors"].astype(np.float64), npz["owner"].astype(np.int64)
    from shardgate.safety.embedder import MiniLMEmbedder

    texts = [obj["text"] for obj in read_jsonl(path)]
    vectors, owner = MiniLMEmbedder().embed_chunks(texts, EMBED_CHUNKS)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vectors=vectors, owner=owner)
    return vectors.astype(np.float64), owner


def fit_logistic(x: Floats, y: Floats, weight: Floats, l2: float) -> tuple[Floats, float]:
    """Weighted L2-regularised logistic regression by Newton's method (deterministic)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    w = np.zeros(xb.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (weight * (p - y)) + reg * w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    return w[:-1], float(w[-1])


def balanced(y: Floats) -> Floats:
    pos = max(y.sum(), 1.0)
    neg = max(len(y) - y.sum(), 1.0)
    out: Floats = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
    return out


def choose_threshold(scores: Floats, y: Floats) -> float:
    """Middle of the thresholds meeting both targets on val; else best recall at the FPR cap."""
    cands = np.unique(np.concatenate([scores, [1.0]]))
    rec = np.array([(scores[y == 1] >= t).mean() for t in cands])
    fpr = np.array([(scores[y == 0] >= t).mean() for t in cands])
    ok = (rec >= TARGET_RECALL) & (fpr <= TARGET_FPR)
    if ok.any():
        lo = cands[ok].min()
        hi = cands[ok].max()
        return float((lo + hi) / 2)
    capped = fpr <= TARGET_FPR
    best = rec[capped].max()
    return float(cands[capped & (rec == best)].min())


def metrics(scores: Floats, y: Floats, thr: float) -> dict[str, float]:
    pred = scores >= thr
    tp = float((pred & (y == 1)).sum())
    fp = float((pred & (y == 0)).sum())
    pos, neg = float((y == 1).sum()), float((y == 0).sum())
    return {
        "n_pos": pos,
        "n_neg": neg,
        "precision": tp / max(tp + fp, 1.0),
        "recall": tp / max(pos, 1.0),
        "fpr": fp / max(neg, 1.0),
    }


def recall_at_fpr(scores: Floats, y: Floats, fpr: float) -> float:
    neg = np.sort(scores[y == 0])[::-1]
    cut = neg[int(np.floor(fpr * len(neg)))] if len(neg) else 1.0
    return float((scores[y == 1] > cut).mean())


@dataclass(frozen=True)
class Embedded:
    rows: list[Row]
    vectors: Floats  # (n_chunks, dim)
    owner: npt.NDArray[np.int64]  # text index per chunk
    first: npt.NDArray[np.int64]  # index of each text's first chunk

    def texts_in(self, role: str) -> npt.NDArray[np.int64]:
        return np.array([i for i, r in enumerate(self.rows) if r.role == role], np.int64)

    def labels(self, idx: npt.NDArray[np.int64]) -> Floats:
        return np.array([self.rows[i].label for i in idx], np.float64)

    def chunks_of(self, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.flatnonzero(np.isin(self.owner, idx))


def embed_rows(spec: DetectorSpec, datasets: Path, cache: Path) -> tuple[Embedded, str]:
    rows = load_rows(spec, datasets)
    files = {f: embed_file(data_file(datasets, f), cache) for f in {r.file for r in rows}}
    chunks = {f: _chunks_by_line(owner) for f, (_, owner) in files.items()}
    vectors, owner = [], []
    for i, row in enumerate(rows):
        picked = chunks[row.file][row.line]
        vectors.append(files[row.file][0][picked])
        owner += [i] * len(picked)
    stacked = np.concatenate(vectors)
    owners = np.array(owner, np.int64)
    first = np.searchsorted(owners, np.arange(len(rows)))
    return Embedded(rows, stacked, owners, first.astype(np.int64)), data_sha256(spec, datasets)


def _chunks_by_line(owner: npt.NDArray[np.int64]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, line in enumerate(owner.tolist()):
        out.setdefault(line, []).append(i)
    return out


def score(head: LinearHead, data: Embedded, idx: npt.NDArray[np.int64]) -> Floats:
    """Scores of texts ``idx`` exactly as the runtime classifier computes them."""
    chunks = data.chunks_of(idx)
    remap = {int(t): j for j, t in enumerate(idx)}
    owner = np.array([remap[int(t)] for t in data.owner[chunks]], np.int64)
    vectors = data.vectors[chunks].astype(np.float32)
    return head.probabilities(vectors, owner, len(idx)).astype(np.float64)


def make_head(spec: DetectorSpec, w: Floats, b: float, max_chunks: int, sha: str) -> LinearHead:
    return LinearHead(
        name=spec.name,
        labels=("benign", spec.positive),
        weight=w.astype(np.float32),
        bias=b,
        threshold=0.5,
        max_chunks=max_chunks,
        embedding_model=EMBEDDING_MODEL,
        data_sha256=sha,
    )


def fit_mode(
    data: Embedded, train: npt.NDArray[np.int64], mode: str, l2: float
) -> tuple[Floats, float]:
    y = data.labels(train)
    if mode in ("first", "max"):
        return fit_logistic(data.vectors[data.first[train]], y, balanced(y), l2)
    chunks = data.chunks_of(train)
    pos = {int(t): j for j, t in enumerate(train)}
    text_of = np.array([pos[int(t)] for t in data.owner[chunks]])
    per_text = np.bincount(text_of, minlength=len(train)).astype(np.float64)
    weight = balanced(y)[text_of] / per_text[text_of]
    return fit_logistic(data.vectors[chunks], y[text_of], weight, l2)


def train_detector(spec: DetectorSpec, data: Embedded, sha: str) -> LinearHead:
    """Pick chunk mode and L2 on val (recall at 5 %, then 1 % FPR), then the threshold."""
    train, val = data.texts_in("train"), data.texts_in("val")
    y_val = data.labels(val)
    fitted: dict[tuple[str, float], tuple[tuple[float, float], LinearHead]] = {}
    for mode in MODES:
        for l2 in sorted(L2_GRID, reverse=True):
            w, b = fit_mode(data, train, mode, l2)
            head = make_head(spec, w, b, 1 if mode == "first" else EMBED_CHUNKS, sha)
            s = score(head, data, val)
            key = (recall_at_fpr(s, y_val, TARGET_FPR), recall_at_fpr(s, y_val, 0.01))
            fitted[mode, l2] = key, replace(head, threshold=choose_threshold(s, y_val))
            print(
                f"  {spec.name} {mode=:5} {l2=:<5} val recall@FPR5%={key[0]:.3f} @1%={key[1]:.3f}"
            )
    # max() keeps the first of equals: the simplest mode, the strongest regularisation.
    (mode, l2), (_, head) = max(fitted.items(), key=lambda kv: kv[1][0])
    print(f"  chosen: {mode=} {l2=} threshold={head.threshold:.4f}")
    _compare_modes(spec, data, fitted)
    if spec.category_map:
        head = _with_categories(spec, head, data, train)
    return head


def _compare_modes(
    spec: DetectorSpec,
    data: Embedded,
    fitted: dict[tuple[str, float], tuple[tuple[float, float], LinearHead]],
) -> None:
    """For the record only (selection used val): each mode's val-best head on test."""
    test = data.texts_in("test")
    y = data.labels(test)
    for mode in MODES:
        (_, l2), (_, head) = max(
            ((k, v) for k, v in fitted.items() if k[0] == mode), key=lambda kv: kv[1][0]
        )
        m = metrics(score(head, data, test), y, head.threshold)
        print(
            f"  [diagnostic, test] {spec.name} {mode=:5} {l2=:<5} recall={m['recall']:.3f} "
            f"FPR={m['fpr']:.3f} precision={m['precision']:.3f}"
        )


def _with_categories(
    spec: DetectorSpec, head: LinearHead, data: Embedded, train: npt.NDArray[np.int64]
) -> LinearHead:
    pos = np.array([i for i in train if data.rows[i].label == 1], np.int64)
    cats = [policy_category(spec, data.rows[i].category) for i in pos]
    names = tuple(sorted(set(cats)))
    x = data.vectors[data.first[pos]]
    ws, bs = [], []
    for name in names:
        y = np.array([c == name for c in cats], np.float64)
        w, b = fit_logistic(x, y, balanced(y), 1.0)
        ws.append(w)
        bs.append(b)
    return replace(
        head,
        categories=names,
        category_weight=np.array(ws, np.float32),
        category_bias=np.array(bs, np.float32),
    )


def save(head: LinearHead, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{head.name}.npz"
    np.savez(
        path,
        name=np.str_(head.name),
        labels=np.array(head.labels),
        weight=head.weight,
        bias=np.float32(head.bias),
        threshold=np.float32(head.threshold),
        max_chunks=np.int64(head.max_chunks),
        embedding_model=np.str_(head.embedding_model),
        data_sha256=np.str_(head.data_sha256),
        categories=np.array(head.categories, dtype=np.str_),
        category_weight=head.category_weight,
        category_bias=head.category_bias,
    )
    return path


def report(spec: DetectorSpec, head: LinearHead, data: Embedded) -> None:
    test = data.texts_in("test")
    scores, y = score(head, data, test), data.labels(test)
    m = metrics(scores, y, head.threshold)
    print(
        f"{spec.name:10} test: n_pos={m['n_pos']:.0f} n_neg={m['n_neg']:.0f} "
        f"precision={m['precision']:.3f} recall={m['recall']:.3f} FPR={m['fpr']:.3f} "
        f"(threshold {head.threshold:.4f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--out", type=Path, default=ROOT / "src/shardgate/safety/weights")
    parser.add_argument("--cache", type=Path, default=ROOT / "var/cache/safety")
    args = parser.parse_args(argv)
    heads = []
    for spec in SPECS:
        data, sha = embed_rows(spec, args.datasets, args.cache)
        head = train_detector(spec, data, sha)
        path = save(head, args.out)
        print(f"  wrote {path} ({path.stat().st_size} bytes)")
        heads.append((spec, head, data))
    print("\nheld-out test (source test split + 20% of the split-less rows):")
    for spec, head, data in heads:
        report(spec, head, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
