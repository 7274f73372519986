"""Iteration-level (continuous) batching over a causal language model.

Between two decode steps the scheduler drops finished and aborted sequences and admits
waiting ones: each newcomer is prefilled alone, then joins the shared ``SlotCache`` and
decodes with the rest. One thread owns the model; other threads only ``submit`` and
``abort``, which take a lock and wake the loop.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from shardgate.shard.engine import GenerationEvent, PromptTooLong, SamplingParams
from shardgate.shard.kvcache import SlotCache
from shardgate.shard.prefix_cache import KV, PrefixCache
from shardgate.shard.sampling import sample_rows
from shardgate.shard.sequence import Detokenizer, Sequence

__all__ = ["BatchScheduler"]

log = logging.getLogger(__name__)


class BatchScheduler:
    def __init__(
        self,
        model: Any,
        tokenizer: Detokenizer,
        *,
        eos_ids: frozenset[int],
        max_batch_size: int,
        max_model_len: int,
        prefill_token_budget: int = 2048,
        prefix_cache: bool = True,
    ) -> None:
        config = model.config
        self._model = model
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self.max_batch_size = max_batch_size
        self.max_model_len = max_model_len
        self._prefill_budget = prefill_token_budget
        head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self._cache = SlotCache(
            config.num_hidden_layers,
            config.num_key_value_heads,
            head_dim,
            max_rows=max_batch_size,
            max_len=max_model_len,
            dtype=model.dtype,
        )
        self._prefixes = PrefixCache() if prefix_cache else None
        self._running: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._aborts: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- called from any thread -------------------------------------------------------

    def submit(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        sink: Callable[[GenerationEvent], None],
    ) -> None:
        room = self.max_model_len - len(prompt_ids)
        if not prompt_ids or room < 1:
            raise PromptTooLong(
                f"the prompt has {len(prompt_ids)} tokens; this model's context window is "
                f"{self.max_model_len} tokens"
            )
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        seed = params.seed % 2**63 if params.seed is not None else random.getrandbits(63)
        generator = torch.Generator().manual_seed(seed) if params.temperature > 0 else None
        seq = Sequence(request_id, prompt_ids, params, max_tokens, sink, self._eos_ids, generator)
        with self._cond:
            self._waiting.append(seq)
            self._cond.notify()

    def abort(self, request_id: str) -> None:
        with self._cond:
            self._aborts.add(request_id)
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def running_ids(self) -> list[str]:
        return [s.request_id for s in self._running]

    def waiting_count(self) -> int:
        with self._cond:
            return len(self._waiting)

    def kv_cache_bytes(self) -> int:
        return self._cache.allocated_bytes()

    # -- the model thread -------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._waiting or self._running or self._aborts):
                    self._cond.wait()
                if self._stopping:
                    break
            try:
                self.step()
            except Exception as exc:  # keep serving: fail this batch, not the shard
                log.exception("decode step failed")
                self._fail_all(f"generation failed: {type(exc).__name__}")
        self._fail_all("the shard is shutting down")

    @torch.inference_mode()
    def step(self) -> None:
        """One iteration: apply aborts, admit newcomers, decode one token for everyone."""
        self._apply_aborts()
        self._admit()
        if self._running:
            self._decode()

    def _apply_aborts(self) -> None:
        with self._cond:
            aborts, self._aborts = self._aborts, set()
            if aborts:
                self._waiting = deque(s for s in self._waiting if s.request_id not in aborts)
        if aborts:
            self._retire([s.request_id in aborts for s in self._running])

    def _admit(self) -> None:
        """Prefill newcomers while slots last and their padded prompts fit the budget."""
        admitted: list[Sequence] = []
        width = 0
        with self._cond:
            while self._waiting and len(self._running) + len(admitted) < self.max_batch_size:
                wider = max(width, len(self._waiting[0].prompt_ids))
                if admitted and (len(admitted) + 1) * wider > self._prefill_budget:
                    break
                admitted.append(self._waiting.popleft())
                width = wider
        # Prompts that reuse the same cached prefix (or none) are prefilled together.
        groups: dict[tuple[int, int], tuple[int, KV | None, list[Sequence]]] = {}
        for seq in admitted:
            start, cached = self._cached_prefix(seq)
            groups.setdefault((start, id(cached)), (start, cached, []))[2].append(seq)
        for start, cached, members in groups.values():
            self._prefill(members, start, cached)

    def _cached_prefix(self, seq: Sequence) -> tuple[int, KV | None]:
        hit = self._prefixes.lookup(seq.prompt_ids) if self._prefixes is not None else None
        return hit if hit is not None else (0, None)

    def _prefill(self, group: list[Sequence], start: int, cached: KV | None) -> None:
        """One forward pass over the prompts of ``group``, which share ``start`` cached
        tokens. Prompts are right-padded: a causal mask already keeps real tokens from
        attending to the padding after them, and the padding's outputs are dropped."""
        rows = len(group)
        lengths = [len(s.prompt_ids) - start for s in group]
        width = max(lengths)
        input_ids = torch.zeros((rows, width), dtype=torch.long)
        for row, seq in enumerate(group):
            input_ids[row, : lengths[row]] = torch.tensor(seq.prompt_ids[start:])
        if cached is not None:
            cached = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in cached]
        scratch = DynamicCache(ddp_cache_data=cached, config=self._model.config)
        # The decoder alone, then the output head on each row's last real position only:
        # full logits for every prompt position would cost more than the prefill itself.
        hidden = self._model.get_decoder()(
            input_ids=input_ids, past_key_values=scratch, use_cache=True
        ).last_hidden_state
        last = hidden[torch.arange(rows), torch.tensor(lengths) - 1]
        logits = self._model.get_output_embeddings()(last)
        tokens = sample_rows(logits, [s.sampling for s in group])
        for row, (seq, token) in enumerate(zip(group, tokens, strict=True)):
            end = start + lengths[row]
            kv = [
                (la.keys[row : row + 1, :, :end], la.values[row : row + 1, :, :end])
                for la in scratch.layers
            ]
            if self._prefixes is not None:
                self._prefixes.remember(seq.prompt_ids, kv)
            seq.push(token, self._tokenizer)
            if seq.finish_reason is None:
                self._cache.add_row(kv)
                self._running.append(seq)

    def _decode(self) -> None:
        cache = self._cache
        cache.reserve(1)
        out = self._model(
            input_ids=torch.tensor([[s.next_token] for s in self._running]),
            attention_mask=cache.attention_mask(1),
            position_ids=cache.positions(),
            past_key_values=cache,
            use_cache=True,
        )
        cache.advance(1)
        tokens = sample_rows(out.logits[:, -1], [s.sampling for s in self._running])
        for row, (seq, token) in enumerate(zip(self._running, tokens, strict=True)):
            seq.push(token, self._tokenizer)
            if seq.finish_reason is None and cache.length - cache.pads[row] >= self.max_model_len:
                seq.finish("length")
        self._retire([s.finish_reason is not None for s in self._running])

    def _retire(self, done: list[bool]) -> None:
        if not any(done):
            return
        keep = [i for i, d in enumerate(done) if not d]
        for seq, d in zip(self._running, done, strict=True):
            if d and seq.finish_reason is None:
                seq.finish("abort")
        self._running = [self._running[i] for i in keep]
        self._cache.keep_rows(keep)

    def _fail_all(self, message: str) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        for seq in [*self._running, *waiting]:
            if seq.finish_reason is None:
                seq.finish("error", message)
        self._running = []
        self._cache.release()
