"""Training a LoRA adapter through the runner's own forward pass, so that it learns on
exactly what it will read when served: the same cache, prefixes and memories."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mempipe.engine.llama import LlamaRunner, Prefix
from mempipe.engine.lora import Adapter

WARMUP = 20  # steps of rising learning rate before it falls linearly to zero


@dataclass
class Example:
    """A prompt (after the prefix `prefix()` builds, if any) and the reply the adapter
    should learn to write. The prefix is built when the example is read: a prefix of a
    few passages takes tens of MB, too much to hold for hundreds of examples."""

    prefix: Callable[[], Prefix | None]
    prompt: list[int]
    reply: list[int]


def fit(runner: LlamaRunner, adapter: Adapter, examples: list[Example], epochs: int,
        lr: float, progress: Callable[[int, int, float], None] | None = None,
        seed: int = 0) -> list[float]:
    """Train `adapter` in place, one example a step (AdamW, clipped gradients); returns
    each epoch's mean loss. `progress(step, steps, loss)` hears each step."""
    params = adapter.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * len(examples)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / WARMUP) * max(0.0, 1 - s / steps))
    order, shuffle = list(examples), random.Random(seed)
    work, step, losses = runner.private(), 0, []
    try:
        for _ in range(epochs):
            shuffle.shuffle(order)
            total = 0.0
            for example in order:
                loss = _loss(work, adapter, example)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                total += loss.item()
                step += 1
                if progress is not None:
                    progress(step, steps, loss.item())
            losses.append(total / max(1, len(order)))
    finally:
        work.release()
        for p in params:
            p.requires_grad_(False)
    return losses


def _loss(work: LlamaRunner, adapter: Adapter, example: Example) -> torch.Tensor:
    """Cross-entropy of the reply's tokens, read after the prompt in a fresh cache (a
    cache written in one step's graph must not be reused in the next)."""
    work.release()
    prefix = example.prefix()
    slots = prefix.slots if prefix is not None else 0
    ids = example.prompt + example.reply
    work.reserve(1, slots + len(ids))
    work.inject(0, prefix)
    work.attach(0, adapter)
    device = work.device
    hidden = work.forward(0, torch.tensor([ids], device=device),
                          torch.tensor([slots], device=device))
    predicting = hidden[0, len(example.prompt) - 1:len(ids) - 1]
    return F.cross_entropy(work.logits(predicting),
                           torch.tensor(example.reply, device=device))
