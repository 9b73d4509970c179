"""Λ-shaped attention (LM-Infinite): read a sequence far longer than the model's trained
positions in one pass, in bounded memory.

Every query attends to the first `n_global` tokens and to the last `window` tokens, and
no relative distance exceeds `window`: window keys are rotated at their own positions, the
global keys as if exactly `window` tokens back. Window keys are cached rotated (their
distance to any query that can see them is the true one) and the global keys also
un-rotated, since their rotation depends on who reads them; the cache never holds more
than n_global + window positions between chunks, whatever the input's length."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mempipe.engine.base import GLOBAL_TOKENS
from mempipe.engine.llama import LlamaRunner, _rms_norm, _rotate

CHUNK = 512  # queries read per forward pass


class LambdaReader:
    """One sequence read and continued with Λ-shaped attention over `runner`'s weights."""

    def __init__(self, runner: LlamaRunner, window: int | None = None,
                 n_global: int = GLOBAL_TOKENS) -> None:
        self.runner = runner
        self.window = window or min(4096, runner.max_positions)
        self.n_global = n_global
        # Per layer, (kv_heads, positions, head_dim): keys rotated at their own positions
        # (a window key is always read at its true distance), values, and the global keys
        # un-rotated, to be read at the capped distance.
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.globals: list[torch.Tensor] = []
        self.positions = torch.zeros(0, dtype=torch.long, device=runner.device)

    @property
    def cached(self) -> int:
        return int(self.positions.numel())

    def read(self, ids: list[int], progress: Callable[[int], None] | None = None
             ) -> torch.Tensor:
        """Feed `ids` after what was read before; the next-token logits after the last."""
        hidden = None
        with torch.inference_mode():
            for start in range(0, len(ids), CHUNK):
                hidden = self._forward(ids[start:start + CHUNK])
                if progress is not None:
                    progress(min(len(ids), start + CHUNK))
            assert hidden is not None, "nothing to read"
            return self.runner.logits(hidden[-1:])[0]

    def generate(self, ids: list[int], max_tokens: int, eos: set[int],
                 progress: Callable[[int], None] | None = None,
                 choose: Callable[[torch.Tensor], int] | None = None) -> list[int]:
        """The continuation of `ids` (greedy unless `choose` picks from the logits), at
        most `max_tokens`, stopping at an eos token."""
        logits = self.read(ids, progress)
        written: list[int] = []
        while len(written) < max_tokens:
            token = choose(logits) if choose is not None else int(logits.argmax())
            if token in eos:
                break
            written.append(token)
            logits = self.read([token])
        return written

    def _forward(self, ids: list[int]) -> torch.Tensor:
        runner, device, t = self.runner, self.runner.device, len(ids)
        first = int(self.positions[-1]) + 1 if self.cached else 0
        new = torch.arange(first, first + t, device=device)
        positions = torch.cat([self.positions, new])  # every key's position, then ours
        distance = new[:, None] - positions[None, :]  # (queries, keys)
        local = (distance >= 0) & (distance < self.window)
        g = min(self.n_global, first + t)  # the global keys lead the cache
        far = (distance[:, :g] >= self.window)  # global keys out of the window's reach
        cos, sin = runner.rotary(runner.embed[:1], new[None])
        at_window = runner.rotary(runner.embed[:1], torch.full((1, 1), self.window,
                                                               device=device))
        kv, group, d = runner.kv_heads, runner.heads // runner.kv_heads, runner.head_dim
        q_size, kv_size = runner.heads * d, kv * d
        h = F.embedding(torch.tensor([ids], device=device), runner.embed)
        keep = (positions < self.n_global) | (positions > first + t - 1 - self.window)
        for i, block in enumerate(runner.blocks):
            x = _rms_norm(h, block.attn_norm, runner.eps)
            q, k, v = F.linear(x, block.qkv, block.qkv_bias).split((q_size, kv_size, kv_size),
                                                                   dim=-1)
            q = q.view(t, runner.heads, d).transpose(0, 1)
            raw = k.view(t, kv, d).transpose(0, 1)
            k, v = _rotate(raw, cos, sin), v.view(t, kv, d).transpose(0, 1)
            if i < len(self.keys):
                k, v = torch.cat([self.keys[i], k], dim=1), torch.cat([self.values[i], v], 1)
                raw = torch.cat([self.globals[i], raw], dim=1)[:, :g]
            else:
                raw = raw[:, :g]
                self.keys.append(k)
                self.values.append(v)
                self.globals.append(raw)
            # Query heads grouped by the key head they share: (kv, group * t, d).
            near = _rotate(q, cos, sin).reshape(kv, group * t, d)
            scores = (near @ k.transpose(1, 2)).float().view(kv, group, t, -1)
            scores = scores.masked_fill(~local, float("-inf"))
            if bool(far.any()):  # a global key read as if exactly `window` tokens back
                capped = _rotate(q, *at_window).reshape(kv, group * t, d)
                capped = (capped @ raw.transpose(1, 2)).float().view(kv, group, t, g)
                scores[..., :g] = torch.where(far, capped, scores[..., :g])
            weights = (scores / math.sqrt(d)).softmax(-1).to(v.dtype).view(kv, group * t, -1)
            attended = (weights @ v).view(runner.heads, t, d)
            h = h + F.linear(attended.transpose(0, 1).reshape(1, t, q_size), block.out)
            x = _rms_norm(h, block.mlp_norm, runner.eps)
            gate, up = F.linear(x, block.gate_up).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, block.down)
            self.keys[i], self.values[i], self.globals[i] = k[:, keep], v[:, keep], raw
        self.positions = positions[keep]
        return _rms_norm(h, runner.norm, runner.eps)[0]
