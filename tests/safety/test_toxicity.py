from __future__ import annotations

from pathlib import Path

import pytest

from shardgate.safety.base import Finding
from shardgate.safety.toxicity import CACHE_FILE, LABELS, ToxicityDetector
from tests.conftest import MODEL_CACHE

# Converted from the installed package once, then shared like the converted chat model.
CACHE = MODEL_CACHE / "toxicity"

# Outputs of the original Keras model (toxic-comment-classifier 0.3.0, its own tokenizer
# pickle and pad_sequences, run with keras 3.15.1 on the torch backend), to six decimals.
KERAS_REFERENCE = {
    "You are a stupid worthless idiot": (0.996437, 0.160718, 0.883296, 0.014001, 0.93353, 0.057055),
    "I will kill you": (0.771125, 0.083053, 0.214237, 0.180122, 0.384071, 0.142296),
    "Thank you for the helpful edit, have a nice day.": (
        0.009822,
        0.000045,
        0.002317,
        0.000042,
        0.003247,
        0.000372,
    ),
    "": (0.067534, 0.002373, 0.029382, 0.001006, 0.015355, 0.004006),
}
BENIGN = [
    "Thank you for the helpful edit, have a nice day.",
    "What is the capital of France?",
    "Please review the article's references section.",
]


@pytest.fixture(scope="module")
def detector() -> ToxicityDetector:
    return ToxicityDetector.load(CACHE)


def test_weights_are_converted_from_the_package_on_first_use(tmp_path: Path) -> None:
    detector = ToxicityDetector.load(tmp_path)
    assert (tmp_path / CACHE_FILE).is_file() and not list(tmp_path.glob("*.partial*"))
    assert detector.name == "toxicity"
    assert ToxicityDetector.load(tmp_path).scores(["hi"]) == detector.scores(["hi"])


def test_matches_keras_reference(detector: ToxicityDetector) -> None:
    got = detector.scores(list(KERAS_REFERENCE))
    for scores, expected in zip(got, KERAS_REFERENCE.values(), strict=True):
        assert list(scores) == list(LABELS)
        assert list(scores.values()) == pytest.approx(expected, abs=2e-6)


def test_insult_scores_high(detector: ToxicityDetector) -> None:
    (scores,) = detector.scores(["You are a stupid worthless idiot"])
    assert scores["toxic"] > 0.9
    assert scores["insult"] > 0.9
    assert scores["threat"] < 0.1


def test_threat_scores_toxic_and_above_benign(detector: ToxicityDetector) -> None:
    # The model is weak on the threat label (Jigsaw has few threats): "I will kill you" is
    # toxic but its threat score stays under 0.5, far above any benign text's.
    (threat,) = detector.scores(["I will kill you"])
    assert threat["toxic"] > 0.5
    assert threat["threat"] > 0.1
    assert all(s["threat"] < 0.01 for s in detector.scores(BENIGN))


def test_benign_scores_low(detector: ToxicityDetector) -> None:
    for scores in detector.scores(BENIGN):
        assert max(scores.values()) < 0.05


def test_batch_equals_single(detector: ToxicityDetector) -> None:
    texts = [*KERAS_REFERENCE, "you are an IDIOT!!!", "word " * 500]
    batch = detector.scores(texts)
    for text, scores in zip(texts, batch, strict=True):
        (single,) = detector.scores([text])
        assert single == pytest.approx(scores, abs=1e-6)


def test_empty_and_unknown_words_score_as_padding(detector: ToxicityDetector) -> None:
    empty = detector.scores([""])[0]
    assert detector.scores(["   !!!???\n"])[0] == pytest.approx(empty, abs=1e-6)
    assert detector.scan("") == []


def test_long_text_keeps_last_100_words(detector: ToxicityDetector) -> None:
    insult = "you are a stupid worthless idiot"
    benign = "the weather is nice today " * 40  # 200 known words
    at_end, at_start = detector.scores([benign + insult, insult + " " + benign])
    assert at_end["insult"] > 0.5
    assert at_start == pytest.approx(detector.scores([benign])[0], abs=1e-6)


def test_scan_reports_labels_over_threshold(detector: ToxicityDetector) -> None:
    text = "You are a stupid worthless idiot"
    findings = detector.scan(text)
    categories = {f.category for f in findings}
    assert {"toxicity.toxic", "toxicity.insult", "toxicity.obscene"} == categories
    assert all(f.start == 0 and f.end == len(text) and 0.5 <= f.score <= 1 for f in findings)
    assert all(isinstance(f, Finding) for f in findings)
    assert detector.scan("What is the capital of France?") == []


def test_thresholds_are_configurable() -> None:
    strict = ToxicityDetector.load(CACHE, threshold=0.99, label_thresholds={"threat": 0.1})
    assert {f.category for f in strict.scan("You are a stupid worthless idiot")} == {
        "toxicity.toxic"
    }
    assert {f.category for f in strict.scan("I will kill you")} == {"toxicity.threat"}
    with pytest.raises(ValueError, match="unknown toxicity labels"):
        ToxicityDetector.load(CACHE, label_thresholds={"rude": 0.5})
