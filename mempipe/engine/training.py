"""Training a LoRA adapter through the runner's own forward pass, so that it learns on
exactly what it will read when served: the same cache, prefixes and memories."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mempipe.engine.llama import LlamaRunner, Prefix
from mempipe.engine.lora import Adapter
from mempipe.files import write_atomically

WARMUP = 20  # steps of rising learning rate before it falls linearly to zero
CHECKPOINT_STEPS = 50  # about half a minute of training on a 2-core CPU


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
        seed: int = 0, checkpoint: Path | None = None, every: int | None = None,
        steps: int | None = None) -> list[float]:
    """Train `adapter` in place, one example a step (AdamW, clipped gradients), for
    `epochs` passes or at most `steps` steps; returns each epoch's mean loss (of the steps
    it ran). `progress(step, steps, loss)` hears each step. With
    `checkpoint`, the training's whole state is written there every `every` steps and a
    run that finds a checkpoint of the same training goes on from it, to the same
    result: a killed training loses at most `every` steps. It is removed at the end."""
    if not examples:
        raise ValueError("no examples to train on")
    params, every = adapter.parameters(), every or CHECKPOINT_STEPS
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = min(steps or epochs * len(examples), epochs * len(examples))
    epochs = -(-steps // len(examples))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / WARMUP) * max(0.0, 1 - s / steps))
    order, shuffle = list(examples), random.Random(seed)
    signature = _signature(adapter, examples, steps, lr, seed)
    state = _resumed(checkpoint, signature, params, optimizer, schedule)
    step, losses, total = state["step"], state["losses"], state["total"]
    for p in params:
        p.requires_grad_(True)
    work = runner.private()
    try:
        for epoch in range(epochs):
            shuffle.shuffle(order)  # every epoch's, so a resumed run sees the same order
            if epoch < len(losses):
                continue
            for example in order[step - epoch * len(order):steps - epoch * len(order)]:
                loss = _loss(work, adapter, example)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                total += loss.item()
                step += 1
                if checkpoint is not None and step % every == 0 and step < steps:
                    _save(checkpoint, {"signature": signature, "step": step,
                                       "losses": losses, "total": total,
                                       "params": [p.detach() for p in params],
                                       "optimizer": optimizer.state_dict(),
                                       "schedule": schedule.state_dict()})
                if progress is not None:
                    progress(step, steps, loss.item())
            losses.append(total / max(1, min(len(order), steps - epoch * len(order))))
            total = 0.0
    finally:
        work.release()
        for p in params:
            p.requires_grad_(False)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return losses


def _signature(adapter: Adapter, examples: list[Example], steps: int, lr: float,
               seed: int) -> str:
    """Names one training: a checkpoint of another is never resumed."""
    digest = hashlib.sha256(repr((adapter.model, adapter.rank, steps, lr, seed)).encode())
    for example in examples:
        digest.update(repr((example.prompt, example.reply)).encode())
    return digest.hexdigest()


def _resumed(checkpoint: Path | None, signature: str, params: list[torch.Tensor],
             optimizer: torch.optim.Optimizer, schedule: Any) -> dict[str, Any]:
    """Where training starts: the checkpoint's state, loaded into the adapter, optimiser
    and schedule when it is of this training; else the beginning."""
    start = {"step": 0, "losses": [], "total": 0.0}
    if checkpoint is None or not checkpoint.is_file():
        return start
    try:
        state = torch.load(checkpoint, weights_only=True)
    except Exception:  # a checkpoint that cannot be read is one there is not
        return start
    if state.get("signature") != signature:
        return start
    with torch.no_grad():
        for p, saved in zip(params, state["params"], strict=True):
            p.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return state


def _save(path: Path, state: dict[str, Any]) -> None:
    """Written whole, then renamed: a kill mid-write leaves the last checkpoint."""
    write_atomically(path, lambda to: torch.save(state, to))


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
