"""The scanner service: which texts the models read, its verdict cache, and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shardgate.safety.classifier import WEIGHTS_DIR, LinearHead, SafetyClassifier
from shardgate.safety.embedder import EMBEDDING_MODEL
from shardgate.safety.scanner import JUDGED_CHARS, SafetyScanner
from tests.conftest import MODEL_CACHE


class RecordingEmbedder:
    """Returns one fixed unit vector per text and records what it was asked to embed."""

    model_name = EMBEDDING_MODEL

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[str] = []
        self.calls = 0
        self.fail = fail

    def embed_chunks(
        self, texts: Sequence[str], max_chunks: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.fail:
            raise RuntimeError("the embedder broke")
        self.seen += texts
        self.calls += 1
        vectors = np.full((len(texts), 384), 384**-0.5, np.float32)
        return vectors, np.arange(len(texts), dtype=np.int64)


def scanner_with(embedder: RecordingEmbedder) -> SafetyScanner:
    heads = [LinearHead.load(WEIGHTS_DIR / f"{n}.npz") for n in ("injection", "harmful")]
    return SafetyScanner(
        MODEL_CACHE / "safety", load_classifier=lambda _: SafetyClassifier(embedder, heads)
    )


async def test_models_read_masked_text_and_long_texts_by_head_and_tail() -> None:
    embedder = RecordingEmbedder()
    scanner = scanner_with(embedder)
    await scanner.start()
    long = "a" * JUDGED_CHARS + "b" * 5000 + "c" * JUDGED_CHARS
    scan = await scanner.scan(
        ["Send a note to jane.doe@example.com", long], {"pii", "injection", "harmful"}
    )
    assert embedder.seen == [
        "Send a note to [EMAIL_1]",
        "a" * JUDGED_CHARS,
        "c" * JUDGED_CHARS,
    ]
    assert [h.category for h in scan.hits if h.detector == "pii"] == ["pii.email"]
    scanner.close()


async def test_a_text_is_judged_once_while_it_is_remembered() -> None:
    embedder = RecordingEmbedder()
    scanner = scanner_with(embedder)
    await scanner.start()
    history = ["What is the capital of France?", "And of Italy?"]
    first = await scanner.scores(history, ("injection", "harmful", "toxicity"))
    second = await scanner.scores([*history, "And of Spain?"], ("injection", "toxicity"))
    assert embedder.seen == [*history, "And of Spain?"]  # the history was not embedded again
    assert second[0].detections["injection"] == first[0].detections["injection"]
    assert "harmful" not in second[0].detections and second[0].toxicity == first[0].toxicity
    scanner.close()


async def test_a_model_that_raises_is_reported_and_the_others_still_score() -> None:
    scanner = scanner_with(RecordingEmbedder(fail=True))
    await scanner.start()
    failed: dict[str, str] = {}
    (scores,) = await scanner.scores(["hello there"], failed=failed)
    assert set(failed) == {"injection", "harmful"}
    assert "RuntimeError" in failed["injection"]
    assert scores.detections == {} and set(scores.toxicity) >= {"toxic", "insult"}
    scanner.close()


async def test_weights_that_do_not_load_fail_every_scan_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "injection.npz").write_bytes(b"not a weights file")
    scanner = SafetyScanner(MODEL_CACHE / "safety", tmp_path)
    await scanner.start()
    scan = await scanner.scan(["hi"], {"injection", "toxicity"})
    assert set(scan.failed) == {"injection"} and set(scanner.load_errors) == {
        "injection",
        "harmful",
    }
    scanner.close()


async def test_requests_waiting_together_are_scored_in_one_batch() -> None:
    embedder = RecordingEmbedder()
    scanner = scanner_with(embedder)
    await scanner.start()
    prompts = [f"Question number {i}: what is {i} + {i}?" for i in range(5)]
    models = [("injection",), ("harmful",), ("injection", "toxicity"), ("toxicity",), ()]
    results = await asyncio.gather(
        *(
            scanner.scores([p], m or ("injection", "harmful"))
            for p, m in zip(prompts, models, strict=True)
        )
    )
    assert embedder.calls == 1 and sorted(embedder.seen) == sorted(prompts)
    # Each request gets the models it asked for, whatever the batch ran.
    assert set(results[0][0].detections) == {"injection"} and not results[0][0].toxicity
    assert set(results[1][0].detections) == {"harmful"}
    assert set(results[2][0].detections) == {"injection"} and results[2][0].toxicity
    assert not results[3][0].detections and results[3][0].toxicity
    scanner.close()


async def test_a_stopped_worker_fails_the_models_instead_of_the_request() -> None:
    scanner = scanner_with(RecordingEmbedder())
    await scanner.start()
    scanner.close()
    failed: dict[str, str] = {}
    (scores,) = await scanner.scores(["hello"], ("injection", "toxicity"), failed)
    assert set(failed) == {"injection", "toxicity"} and scores.detections == {}
