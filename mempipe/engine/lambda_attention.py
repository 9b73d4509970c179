"""Λ-shaped attention (LM-Infinite): read a sequence far longer than the model's trained
positions in one pass, in bounded memory.

Every query attends to the first `n_global` tokens and to the last `window` tokens, and
no relative distance exceeds `window`: window keys are rotated at their own positions, the
global keys as if exactly `window` tokens back. Window keys are cached rotated (their
distance to any query that can see them is the true one) and the global keys also
un-rotated, since their rotation depends on who reads them; the cache never holds more
than n_global + window positions between chunks, whatever the input's length. Rotations
take float64 angles (`LlamaRunner.angles`): at positions far past the trained ones,
float32 angles drift from the exact distance between a query and a key."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mempipe.engine.base import GLOBAL_TOKENS
from mempipe.engine.llama import LlamaRunner, _rms_norm, _rotate, attend

CHUNK = 512  # queries read per forward pass


class LambdaReader:
    """One sequence read and continued with Λ-shaped attention over `runner`'s weights."""

    def __init__(self, runner: LlamaRunner, window: int | None = None,
                 n_global: int = GLOBAL_TOKENS) -> None:
        self.runner = runner
        self.window = window or min(4096, runner.max_positions)
        self.n_global = n_global
        # Per layer, (1, kv_heads, positions, head_dim): keys rotated at their own positions
        # (a window key is always read at its true distance), values, and the global keys
        # un-rotated, to be read at the capped distance.
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.globals: list[torch.Tensor] = []
        self.positions = torch.zeros(0, dtype=torch.long, device=runner.device)

    @property
    def cached(self) -> int:
        return int(self.positions.numel())

    def fork(self) -> LambdaReader:
        """A reader that has read what this one has and reads on apart from it: inputs
        sharing a long beginning read it once. Nothing is copied; reading replaces a
        layer's tensors, never writes into them."""
        other = LambdaReader(self.runner, self.window, self.n_global)
        other.keys, other.values = list(self.keys), list(self.values)
        other.globals, other.positions = list(self.globals), self.positions
        return other

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
            return self.runner.logits(hidden[-1:], step=len(ids) == 1)[0]

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
        """One chunk through every layer.

        A query reads the window's keys at their true distance and, where a global key is
        out of the window's reach, that key at the capped distance. Both are one SDPA call:
        queries and keys are twice the head's width, [q rotated at its position, q rotated
        at `window`] against [window key, 0] and [0, global key un-rotated], so each score
        is the one its distance calls for; values are [v, 0] and [0, v], and the output is
        the sum of their halves."""
        runner, device, t = self.runner, self.runner.device, len(ids)
        first = int(self.positions[-1]) + 1 if self.cached else 0
        new = torch.arange(first, first + t, device=device)
        positions = torch.cat([self.positions, new])  # every key's position, then ours
        distance = new[:, None] - positions[None, :]  # (queries, keys)
        seen = (distance >= 0) & (distance < self.window)
        g = min(self.n_global, first + t)  # the global keys lead the cache
        far = distance[:, :g] >= self.window  # global keys out of the window's reach
        capped = bool(far.any())
        if capped:
            seen = torch.cat([seen, far], dim=1)
        cos, sin = runner.angles(new)
        at_window = runner.angles(torch.tensor(self.window, device=device))
        h = F.embedding(torch.tensor([ids], device=device), runner.embed)
        keep = (positions < self.n_global) | (positions > first + t - 1 - self.window)
        for i, block in enumerate(runner.blocks):
            q, raw, v = runner.project(block, h)  # (1, heads or kv_heads, t, head_dim)
            k = _rotate(raw, cos, sin)
            if i < len(self.keys):
                k, v = torch.cat([self.keys[i], k], dim=2), torch.cat([self.values[i], v], 2)
                raw = torch.cat([self.globals[i], raw], dim=2)[:, :, :g]
            else:
                raw = raw[:, :, :g]
                self.keys.append(k)
                self.values.append(v)
                self.globals.append(raw)
            rotated = _rotate(q, cos, sin)
            if capped:
                attended = attend(*_side_by_side(rotated, _rotate(q, *at_window), k, raw, v),
                                  seen, scale=runner.head_dim ** -0.5)
                attended = attended[..., :runner.head_dim] + attended[..., runner.head_dim:]
            else:
                attended = attend(rotated, k, v, seen)
            h = runner.finish(block, h, attended)
            self.keys[i], self.values[i] = k[:, :, keep], v[:, :, keep]
            self.globals[i] = raw
        self.positions = positions[keep]
        return _rms_norm(h, runner.norm, runner.eps)[0]


def _side_by_side(q: torch.Tensor, q_at_window: torch.Tensor, keys: torch.Tensor,
                  globals_: torch.Tensor, values: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values twice the head's width (see `_forward`): the window's keys
    first, then the g global keys read at the capped distance."""
    g = globals_.shape[2]
    queries = torch.cat([q, q_at_window], dim=-1)
    zeros = torch.zeros_like(keys)
    keys = torch.cat([torch.cat([keys, zeros], -1),
                      torch.cat([zeros[:, :, :g], globals_], -1)], dim=2)
    zeros = torch.zeros_like(values)
    values = torch.cat([torch.cat([values, zeros], -1),
                        torch.cat([zeros[:, :, :g], values[:, :, :g]], -1)], dim=2)
    return queries, keys, values
