"""Λ-shaped attention (LM-Infinite): read a sequence far longer than the model's trained
positions in one pass, in bounded memory.

Every query attends to the first `n_global` tokens and to the last `window` tokens, and
no relative distance exceeds `window`: window keys are rotated at their own positions, the
global keys as if exactly `window` tokens back. Keys are cached un-rotated, since a global
key's rotation depends on who reads it; the cache never holds more than
n_global + window + one chunk positions, whatever the input's length."""

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
        self.keys: list[torch.Tensor] = []  # per layer: (kv_heads, positions, head_dim)
        self.values: list[torch.Tensor] = []
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
        runner, device = self.runner, self.runner.device
        first = int(self.positions[-1]) + 1 if self.cached else 0
        new = torch.arange(first, first + len(ids), device=device)
        positions = torch.cat([self.positions, new])  # every key's position, then ours
        distance = new[:, None] - positions[None, :]  # (queries, keys)
        local = (distance >= 0) & (distance < self.window)
        glob = (positions < self.n_global)[None, :] & (distance >= self.window)
        g = int((positions < self.n_global).sum())  # the global keys lead the cache
        cos, sin = runner.rotary(runner.embed[:1], positions[None])
        at_zero = runner.rotary(runner.embed[:1], torch.zeros(1, 1, dtype=torch.long,
                                                              device=device))
        at_window = runner.rotary(runner.embed[:1], torch.full((1, 1), self.window,
                                                               device=device))
        q_cos, q_sin = cos[:, -len(ids):], sin[:, -len(ids):]
        scale = 1 / math.sqrt(runner.head_dim)
        repeat = runner.heads // runner.kv_heads
        q_size, kv_size = runner.heads * runner.head_dim, runner.kv_heads * runner.head_dim
        h = F.embedding(torch.tensor([ids], device=device), runner.embed)
        keep = (positions < self.n_global) | (positions > first + len(ids) - 1 - self.window)
        for i, block in enumerate(runner.blocks):
            x = _rms_norm(h, block.attn_norm, runner.eps)
            q, k, v = F.linear(x, block.qkv, block.qkv_bias).split(
                (q_size, kv_size, kv_size), dim=-1)
            q = q.view(len(ids), runner.heads, runner.head_dim).transpose(0, 1)
            k = k.view(len(ids), runner.kv_heads, runner.head_dim).transpose(0, 1)
            v = v.view(len(ids), runner.kv_heads, runner.head_dim).transpose(0, 1)
            if i < len(self.keys):
                k, v = torch.cat([self.keys[i], k], dim=1), torch.cat([self.values[i], v], 1)
            keys = _rotate(k, cos, sin).repeat_interleave(repeat, 0)
            scores = _rotate(q, q_cos, q_sin) @ keys.transpose(1, 2)  # (heads, q, keys)
            scores = scores.float().masked_fill(~local, float("-inf"))
            if g and bool(glob.any()):
                far = _rotate(q, *at_window) @ _rotate(k[:, :g], *at_zero).repeat_interleave(
                    repeat, 0).transpose(1, 2)
                scores[..., :g] = torch.where(glob[:, :g], far.float(), scores[..., :g])
            weights = (scores * scale).softmax(-1).to(v.dtype)
            attended = weights @ v.repeat_interleave(repeat, 0)  # (heads, q, head_dim)
            h = h + F.linear(attended.transpose(0, 1).reshape(1, len(ids), q_size), block.out)
            x = _rms_norm(h, block.mlp_norm, runner.eps)
            gate, up = F.linear(x, block.gate_up).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, block.down)
            if i < len(self.keys):
                self.keys[i], self.values[i] = k[:, keep], v[:, keep]
            else:
                self.keys.append(k[:, keep])
                self.values.append(v[:, keep])
        self.positions = positions[keep]
        return _rms_norm(h, runner.norm, runner.eps)[0]
