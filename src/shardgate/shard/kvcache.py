"""A preallocated, right-aligned KV cache whose batch rows come and go between steps.

Every row shares one column count ``length``; a row whose sequence is shorter than
``length`` is padded on the left and those columns are masked out. Rows are appended
after their own prefill and dropped when they finish, so a decode step always runs on
exactly the live sequences. Storage grows by doubling up to ``max_rows x max_len`` and
is released when the batch empties, which bounds a shard's memory.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

__all__ = ["SlotCache"]


class _SlotLayer(DynamicLayer):
    """One layer's keys and values in a buffer of shape (rows, heads, capacity, dim)."""

    def __init__(self, owner: SlotCache) -> None:
        super().__init__()
        self._owner = owner
        self.buf_k: torch.Tensor | None = None
        self.buf_v: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.buf_k is not None and self.buf_v is not None
        rows, start = key_states.shape[0], self._owner.length
        end = start + key_states.shape[-2]
        self.buf_k[:rows, :, start:end] = key_states
        self.buf_v[:rows, :, start:end] = value_states
        self.keys = self.buf_k[:rows, :, :end]
        self.values = self.buf_v[:rows, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._owner.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self._owner.length + query_length, 0


class SlotCache(Cache):
    """The batch's KV cache plus the per-row left padding that the attention mask needs."""

    def __init__(
        self,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        *,
        max_rows: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self._row_shape = (kv_heads, head_dim)
        self._dtype = dtype
        self._slot_layers = [_SlotLayer(self) for _ in range(num_layers)]
        super().__init__(layers=list(self._slot_layers))
        self.max_rows = max_rows
        self.max_len = max_len
        self.length = 0
        self.pads: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.pads)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def add_row(self, prefill_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Append one sequence whose prefill produced ``prefill_kv`` (per layer, (1,H,p,D))."""
        plen = prefill_kv[0][0].shape[-2]
        if plen > self.length:
            self._shift_right(plen - self.length)
        row = self.rows
        self._ensure(row + 1, self.length + 1)
        offset = self.length - plen
        for layer, (k, v) in zip(self._slot_layers, prefill_kv, strict=True):
            assert layer.buf_k is not None and layer.buf_v is not None
            layer.buf_k[row, :, :offset] = 0
            layer.buf_v[row, :, :offset] = 0
            layer.buf_k[row, :, offset : self.length] = k[0]
            layer.buf_v[row, :, offset : self.length] = v[0]
        self.pads.append(offset)

    def keep_rows(self, keep: list[int]) -> None:
        """Keep only the rows at ``keep`` (in that order) and drop shared left padding."""
        if not keep:
            self.release()
            return
        index = torch.tensor(keep, dtype=torch.long)
        for layer in self._slot_layers:
            assert layer.buf_k is not None and layer.buf_v is not None
            layer.buf_k[: len(keep)] = layer.buf_k.index_select(0, index)
            layer.buf_v[: len(keep)] = layer.buf_v.index_select(0, index)
        self.pads = [self.pads[i] for i in keep]
        self._shift_left(min(self.pads))

    def advance(self, steps: int = 1) -> None:
        """Record that the last forward pass appended ``steps`` columns to every row."""
        self.length += steps

    def reserve(self, extra: int) -> None:
        self._ensure(self.rows, self.length + extra)

    def attention_mask(self, query_length: int = 1) -> torch.Tensor:
        """A boolean 4D mask (rows, 1, q, length + q): True where a row may attend."""
        total = self.length + query_length
        cols = torch.arange(total).unsqueeze(0)
        pads = torch.tensor(self.pads, dtype=torch.long).unsqueeze(1)
        mask = cols >= pads
        return mask[:, None, None, :].expand(-1, 1, query_length, -1)

    def positions(self) -> torch.Tensor:
        """Position id of the next token of every row."""
        return torch.tensor([[self.length - p] for p in self.pads], dtype=torch.long)

    def release(self) -> None:
        for layer in self._slot_layers:
            layer.buf_k = layer.buf_v = None
            layer.keys = layer.values = None
        self.length = 0
        self.pads = []

    def allocated_bytes(self) -> int:
        return sum(
            layer.buf_k.numel() * layer.buf_k.element_size() * 2
            for layer in self._slot_layers
            if layer.buf_k is not None
        )

    def _ensure(self, rows: int, length: int) -> None:
        if length > self.max_len or rows > self.max_rows:
            raise ValueError("KV cache bound exceeded")
        first = self._slot_layers[0].buf_k
        if first is not None and first.shape[0] >= rows and first.shape[2] >= length:
            return
        cap_rows = max(rows, first.shape[0] if first is not None else 0)
        cap_rows = min(self.max_rows, max(cap_rows, 4))
        cap_len = max(length, first.shape[2] if first is not None else 0)
        cap_len = min(self.max_len, max(64, 1 << (cap_len - 1).bit_length()))
        for layer in self._slot_layers:
            layer.buf_k = self._grown(layer.buf_k, cap_rows, cap_len)
            layer.buf_v = self._grown(layer.buf_v, cap_rows, cap_len)

    def _grown(self, buf: torch.Tensor | None, rows: int, length: int) -> torch.Tensor:
        heads, dim = self._row_shape
        new = torch.zeros((rows, heads, length, dim), dtype=self._dtype)
        if buf is not None:
            new[: buf.shape[0], :, : buf.shape[2]] = buf
        return new

    def _shift_right(self, by: int) -> None:
        self._ensure(self.rows, self.length + by)
        for layer in self._slot_layers:
            for buf in (layer.buf_k, layer.buf_v):
                assert buf is not None
                buf[:, :, by : by + self.length] = buf[:, :, : self.length].clone()
                buf[:, :, :by] = 0
        self.pads = [p + by for p in self.pads]
        self.length += by

    def _shift_left(self, by: int) -> None:
        if by <= 0:
            return
        for layer in self._slot_layers:
            for buf in (layer.buf_k, layer.buf_v):
                assert buf is not None
                buf[:, :, : self.length - by] = buf[:, :, by : self.length].clone()
        self.pads = [p - by for p in self.pads]
        self.length -= by
