"""The continuous-batching scheduler, stepped by hand on the real SmolLM2 model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from shardgate.shard.engine import GenerationEvent, PromptTooLong, SamplingParams
from shardgate.shard.scheduler import BatchScheduler
from tests.conftest import QUESTIONS

GREEDY = SamplingParams(max_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def loaded(chat_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(chat_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(chat_model_dir)


def make_scheduler(loaded: tuple[Any, Any], prefix_cache: bool = False) -> BatchScheduler:
    model, tokenizer = loaded
    return BatchScheduler(
        model,
        tokenizer,
        eos_ids=frozenset({tokenizer.eos_token_id}),
        max_batch_size=4,
        max_model_len=512,
        prefix_cache=prefix_cache,
    )


@pytest.fixture
def scheduler(loaded: tuple[Any, Any]) -> BatchScheduler:
    return make_scheduler(loaded)


@pytest.fixture
def prompt(loaded: tuple[Any, Any]) -> Callable[[str], list[int]]:
    _, tokenizer = loaded

    def encode(question: str) -> list[int]:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return list(ids)

    return encode


class Collector:
    def __init__(self) -> None:
        self.events: dict[str, list[GenerationEvent]] = {}

    def sink(self, request_id: str) -> Callable[[GenerationEvent], None]:
        return self.events.setdefault(request_id, []).append

    def submit(
        self,
        scheduler: BatchScheduler,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams = GREEDY,
    ) -> None:
        """Submit a request whose events this collector keeps under ``request_id``."""
        scheduler.submit(request_id, prompt_ids, params, self.sink(request_id))

    def text(self, request_id: str) -> str:
        return "".join(e.text for e in self.events[request_id])

    def final(self, request_id: str) -> GenerationEvent:
        last = self.events[request_id][-1]
        assert last.finish_reason is not None
        return last


def drain(scheduler: BatchScheduler, limit: int = 500) -> None:
    for _ in range(limit):
        if not scheduler.running_ids() and not scheduler.waiting_count():
            return
        scheduler.step()
    raise AssertionError("the scheduler did not finish")


def test_greedy_output_is_the_same_batched_as_alone(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    for i, question in enumerate(QUESTIONS[:4]):
        out.submit(scheduler, f"alone-{i}", prompt(question))
        drain(scheduler)
    # Staggered arrivals: each joins a batch already decoding, with different lengths.
    for i, question in enumerate(QUESTIONS[:4]):
        out.submit(scheduler, f"batched-{i}", prompt(question))
        scheduler.step()
        scheduler.step()
    drain(scheduler)
    # Simultaneous arrivals: prefilled together in one padded pass, then decoded together.
    for i, question in enumerate(QUESTIONS[:4]):
        out.submit(scheduler, f"together-{i}", prompt(question))
    scheduler.step()
    assert len(scheduler.running_ids()) == 4
    drain(scheduler)
    for i in range(4):
        assert out.text(f"alone-{i}"), "the model produced no text"
        assert out.text(f"together-{i}") == out.text(f"alone-{i}")
        assert out.text(f"batched-{i}") == out.text(f"alone-{i}")
        assert (
            out.final(f"batched-{i}").completion_tokens == out.final(f"alone-{i}").completion_tokens
        )


def test_sequences_join_and_leave_mid_batch(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    out.submit(
        scheduler, "long", prompt(QUESTIONS[2]), SamplingParams(max_tokens=30, temperature=0.0)
    )
    scheduler.step()
    scheduler.step()
    assert scheduler.running_ids() == ["long"]
    out.submit(
        scheduler, "short", prompt(QUESTIONS[0]), SamplingParams(max_tokens=3, temperature=0.0)
    )
    scheduler.step()
    assert scheduler.running_ids() == ["long", "short"]  # joined between decode steps
    tokens_before = out.events["long"][-1].completion_tokens
    while "short" in scheduler.running_ids():
        scheduler.step()
    assert out.final("short").finish_reason == "length"
    assert out.final("short").completion_tokens == 3
    assert scheduler.running_ids() == ["long"]  # left while "long" kept decoding
    assert out.events["long"][-1].completion_tokens > tokens_before
    drain(scheduler)
    assert out.final("long").finish_reason in {"length", "stop"}


def test_abort_frees_the_slot_for_a_waiting_request(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    params = SamplingParams(max_tokens=100, temperature=0.0)
    for i in range(5):  # one more than the batch holds
        out.submit(scheduler, f"r{i}", prompt(QUESTIONS[i]), params)
    scheduler.step()
    assert len(scheduler.running_ids()) == 4
    assert scheduler.waiting_count() == 1
    scheduler.abort("r1")
    scheduler.step()
    assert "r1" not in scheduler.running_ids()
    assert "r4" in scheduler.running_ids()
    assert out.final("r1").finish_reason == "abort"
    for i in (0, 2, 3, 4):
        scheduler.abort(f"r{i}")
    scheduler.step()
    assert scheduler.running_ids() == []
    assert scheduler.kv_cache_bytes() == 0  # the cache is released when the batch empties


def test_abort_of_a_waiting_request(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    out.submit(scheduler, "queued", prompt(QUESTIONS[0]))
    scheduler.abort("queued")
    scheduler.step()
    assert scheduler.waiting_count() == 0 and scheduler.running_ids() == []


def test_stop_string_ends_and_is_not_emitted(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    out.submit(scheduler, "free", prompt(QUESTIONS[0]))
    drain(scheduler)
    full = out.text("free")
    assert " is " in full
    out.submit(
        scheduler,
        "stopped",
        prompt(QUESTIONS[0]),
        SamplingParams(max_tokens=24, temperature=0.0, stop=(" is ",)),
    )
    drain(scheduler)
    assert out.text("stopped") == full[: full.index(" is ")]
    assert out.final("stopped").finish_reason == "stop"


def test_seeded_sampling_repeats_and_differs_by_seed(
    scheduler: BatchScheduler, prompt: Callable[[str], list[int]]
) -> None:
    out = Collector()
    for rid, seed in (("a", 7), ("b", 7), ("c", 8)):
        params = SamplingParams(max_tokens=20, temperature=1.0, seed=seed)
        out.submit(scheduler, rid, prompt(QUESTIONS[4]), params)
    drain(scheduler)
    assert out.text("a") == out.text("b")
    assert out.text("a") != out.text("c")


def test_prompt_longer_than_the_window_is_refused(scheduler: BatchScheduler) -> None:
    with pytest.raises(PromptTooLong):
        scheduler.submit("huge", [1] * 600, GREEDY, lambda e: None)


def test_prefix_cache_skips_shared_tokens_and_keeps_the_output(
    loaded: tuple[Any, Any], prompt: Callable[[str], list[int]]
) -> None:
    plain, cached = make_scheduler(loaded), make_scheduler(loaded, prefix_cache=True)
    out = Collector()
    for name, sched in (("plain", plain), ("cached", cached)):
        for i, question in enumerate(QUESTIONS):
            out.submit(sched, f"{name}-{i}", prompt(question))
            drain(sched)
    assert cached._prefixes is not None and len(cached._prefixes) >= 1
    hit = cached._prefixes.lookup(prompt("Something new entirely."))
    assert hit is not None and hit[0] >= 10  # the chat template's shared opening
    for i in range(len(QUESTIONS)):
        assert out.text(f"cached-{i}") == out.text(f"plain-{i}")
