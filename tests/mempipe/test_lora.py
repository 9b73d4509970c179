"""LoRA adapters in the runner, on the tiny random model in fp32: an adapter adds exactly
B A x to each projection, only on the rows that carry it, survives a save, and learns."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from mempipe.engine.lora import TARGETS, Adapter

IDS = [[5, 17, 42, 7, 99, 3], [8, 8, 13, 21, 34, 55]]


def read(runner, adapters, ids=IDS):
    """The last hidden states of `ids`, one row each, row i read with adapters[i]."""
    work = runner.private()
    work.reserve(len(ids), 64)
    for row, adapter in enumerate(adapters):
        work.attach(row, adapter)
    with torch.inference_mode():
        return work.forward(0, torch.tensor(ids), torch.zeros(len(ids), dtype=torch.long))


def trained(runner, seed=1) -> Adapter:
    """An adapter whose B is random, as if trained."""
    adapter = Adapter.fresh(runner.blocks, rank=4, model="m", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for key, b in adapter.b.items():
        adapter.b[key] = torch.randn(b.shape, generator=generator) * 0.05
    return adapter


def test_a_fresh_adapter_changes_nothing(engine) -> None:
    runner = engine.batcher.runner
    fresh = Adapter.fresh(runner.blocks, rank=4, model="m")
    assert torch.equal(read(runner, [fresh, fresh]), read(runner, [None, None]))


def test_an_adapter_adds_its_low_rank_product_to_every_projection(engine) -> None:
    runner = engine.batcher.runner
    adapter = trained(runner)
    with_adapter = read(runner, [adapter, adapter])
    saved = {(i, t): getattr(block, t).clone() for i, block in enumerate(runner.blocks)
             for t in TARGETS}
    try:  # the same weights merged: W + scale * B A
        for (i, target), weight in saved.items():
            delta = adapter.b[f"{i}.{target}"] @ adapter.a[f"{i}.{target}"] * adapter.scale
            getattr(runner.blocks[i], target).copy_(weight + delta)
        merged = read(runner, [None, None])
    finally:
        for (i, target), weight in saved.items():
            getattr(runner.blocks[i], target).copy_(weight)
    assert not torch.allclose(with_adapter, read(runner, [None, None]), atol=1e-3)
    torch.testing.assert_close(with_adapter, merged, atol=1e-4, rtol=1e-4)


def test_rows_with_different_adapters_read_as_each_would_alone(engine) -> None:
    runner = engine.batcher.runner
    first, second = trained(runner, seed=1), trained(runner, seed=2)
    mixed = read(runner, [first, None])
    torch.testing.assert_close(mixed[0], read(runner, [first], IDS[:1])[0])
    torch.testing.assert_close(mixed[1], read(runner, [None], IDS[1:])[0])
    both = read(runner, [first, second])
    torch.testing.assert_close(both[1], read(runner, [second], IDS[1:])[0])


def test_decoding_with_an_adapter_reads_as_prefilling_does(engine) -> None:
    """A decoding step (few tokens: its addition in float32) gives what the same tokens
    read together give."""
    runner = engine.batcher.runner
    adapter = trained(runner)
    whole = read(runner, [adapter, adapter])[:, -1]
    work = runner.private()
    work.reserve(2, 64)
    for row in (0, 1):
        work.attach(row, adapter)
    with torch.inference_mode():
        for at in range(len(IDS[0])):
            step = work.forward(0, torch.tensor(IDS)[:, at:at + 1], torch.full((2,), at))
    torch.testing.assert_close(step[:, -1], whole, atol=1e-4, rtol=1e-4)


def test_an_adapter_survives_saving_in_bf16(engine, tmp_path) -> None:
    runner = engine.batcher.runner
    adapter = trained(runner)
    adapter.about["trained_on"] = "alice"
    adapter.save(tmp_path / "reader.safetensors")
    loaded = Adapter.load(tmp_path / "reader.safetensors")
    assert (loaded.rank, loaded.scale, loaded.model) == (adapter.rank, adapter.scale, "m")
    assert loaded.about == {"trained_on": "alice"}
    assert not list(tmp_path.glob("*.partial"))
    for key, b in adapter.b.items():
        torch.testing.assert_close(loaded.b[key], b.to(torch.bfloat16).float())


def test_training_an_adapter_lowers_its_loss(engine) -> None:
    runner = engine.batcher.runner
    runner.model.requires_grad_(False)
    adapter = Adapter.fresh(runner.blocks, rank=4, model="m")
    params = adapter.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=5e-2)
    ids, target = torch.tensor(IDS[:1]), torch.tensor(IDS[0][1:])
    losses = []
    for _ in range(30):
        work = runner.private()
        work.reserve(1, 64)
        work.attach(0, adapter)
        hidden = work.forward(0, ids, torch.zeros(1, dtype=torch.long))
        loss = torch.nn.functional.cross_entropy(work.logits(hidden[0, :-1]), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.5  # a random model caps how far logits move


TRAINING = """
import os, signal, sys
from pathlib import Path
from mempipe.engine import training
from mempipe.engine.base import Message
from mempipe.engine.local import LocalEngine

model, checkpoint, out, kill_at = sys.argv[1:]
training.CHECKPOINT_STEPS = 3
engine = LocalEngine(model)
examples = [([Message(role="user", content=f"Say {word}.")], list, word)
            for word in ("apple", "pear", "plum", "fig", "lime", "kiwi")]

seen = []

def progress(step, steps, loss):
    seen.append(step)
    if step == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)

adapter = engine.new_adapter(2)
losses = engine.fit_adapter(adapter, examples, epochs=2, lr=1e-2, progress=progress,
                            checkpoint=Path(checkpoint) if checkpoint != "-" else None)
adapter.save(Path(out))
print(losses)
print(seen[0])
"""


@pytest.mark.slow
def test_a_killed_training_goes_on_from_its_checkpoint_to_the_same_adapter(tiny_model,
                                                                            tmp_path) -> None:
    import subprocess
    import sys

    script, checkpoint = tmp_path / "train.py", tmp_path / "adapter.checkpoint"
    script.write_text(TRAINING)

    def train(out: str, kill_at: int, resumable: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tiny_model),
                               str(checkpoint) if resumable else "-", str(tmp_path / out),
                               str(kill_at)], capture_output=True, text=True,
                              env={**os.environ, "MEMPIPE_DTYPE": "float32"})

    killed = train("killed.safetensors", kill_at=8)  # of 12 steps, after the one at 6
    assert killed.returncode == -signal.SIGKILL and checkpoint.is_file()
    resumed, whole = train("resumed.safetensors", 0), train("whole.safetensors", 0, False)
    assert resumed.returncode == whole.returncode == 0, resumed.stderr + whole.stderr
    assert resumed.stdout.split()[-1] == "7" and whole.stdout.split()[-1] == "1"
    assert resumed.stdout.split()[:-1] == whole.stdout.split()[:-1]  # each epoch's loss
    assert not checkpoint.exists()
    a, b = Adapter.load(tmp_path / "resumed.safetensors"), Adapter.load(
        tmp_path / "whole.safetensors")
    assert all(torch.equal(a.b[k], b.b[k]) and torch.equal(a.a[k], b.a[k]) for k in a.a)
    assert any(b.b[k].abs().sum() > 0 for k in b.b)  # it trained
