"""Λ-shaped attention: the same tokens as full attention while the input fits its window,
the same answer whether read at once or a token at a time, every layer's output what the
definition gives far past the model's positions, and bounded memory beyond."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import torch

from mempipe.engine import GenerationRequest, Message, lambda_attention
from mempipe.engine.lambda_attention import LambdaReader
from mempipe.engine.llama import _rotate
from mempipe.engine.local import LocalEngine
from mempipe.errors import BudgetExceeded


def ids_of(engine: LocalEngine, words: int) -> list[int]:
    text = " ".join(f"w{i % 97}" for i in range(words))
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_within_its_window_it_writes_what_full_attention_writes(engine: LocalEngine) -> None:
    ids = ids_of(engine, 200)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)
    reader = LambdaReader(engine.batcher.runner, window=4096)
    assert reader.generate(ids, 10, eos=set()) == out[0, len(ids):].tolist()


def test_reading_in_chunks_or_token_by_token_agrees(engine: LocalEngine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ids = ids_of(engine, 150)  # several times the window below
    runner = engine.batcher.runner
    monkeypatch.setattr(lambda_attention, "CHUNK", 64)
    chunked = LambdaReader(runner, window=64, n_global=4).read(ids)
    stepwise = LambdaReader(runner, window=64, n_global=4)
    for token in ids[:-1]:
        stepwise.read([token])
    assert torch.allclose(chunked, stepwise.read(ids[-1:]), atol=1e-4)
    # Far beyond the window, the input is not what full attention would read.
    full = LambdaReader(runner, window=4096).read(ids)
    assert not torch.allclose(chunked, full, atol=1e-3)


def test_a_fork_reads_on_as_if_it_had_read_everything_itself(engine: LocalEngine) -> None:
    ids = ids_of(engine, 400)
    runner = engine.batcher.runner
    shared = LambdaReader(runner, window=128, n_global=4)
    shared.read(ids[:300])
    fork = shared.fork()
    after_fork = fork.read(ids[300:])
    after_other = shared.read(ids[200:260])
    alone = LambdaReader(runner, window=128, n_global=4).read(ids)
    other_alone = LambdaReader(runner, window=128, n_global=4).read(ids[:300] + ids[200:260])
    assert torch.allclose(after_fork, alone, atol=1e-4)
    assert torch.allclose(after_other, other_alone, atol=1e-4)


def test_memory_stays_bounded_however_long_the_input(engine: LocalEngine) -> None:
    reader = LambdaReader(engine.batcher.runner, window=128, n_global=4)
    reader.read(ids_of(engine, 3000))
    assert reader.cached <= 4 + 128
    assert int(reader.positions[-1]) >= 3000 - 1  # every token was read


def test_a_windowed_request_reads_past_the_models_positions(engine: LocalEngine) -> None:
    text = "word " * 9000
    plain = GenerationRequest(messages=[Message(role="user", content=text)], max_tokens=4,
                              budget=20_000)
    with pytest.raises(BudgetExceeded, match="exceed the model's 8192 positions"):
        anyio.run(engine.generate, plain)
    seen: list[int] = []
    windowed = plain.model_copy(update={"window": 256, "budget": 512,
                                        "progress": lambda read, total: seen.append(read)})
    result = anyio.run(engine.generate, windowed)
    assert result.prompt_tokens > 9000 and 1 <= result.completion_tokens <= 4
    assert seen[-1] == result.prompt_tokens and seen == sorted(seen)
    with pytest.raises(BudgetExceeded, match="budget of 200"):
        anyio.run(engine.generate, windowed.model_copy(update={"budget": 200}))


def lambda_reference(runner: Any, ids: list[int], window: int, n_global: int,
                     last: int) -> list[torch.Tensor]:
    """Each layer's output at the last `last` positions, computed plainly: a query at p
    sees the first `n_global` tokens and the tokens p - window < j <= p, a key j at the
    distance min(p - j, window), scored with the query rotated at `window` and the key at
    `window` minus that distance. Only positions the last ones depend on are read: a layer
    looks `window` further back than the one above it."""
    layers = len(runner.blocks)
    start = max(n_global, len(ids) - last - layers * window)
    where = torch.cat([torch.arange(n_global), torch.arange(start, len(ids))])
    h = torch.nn.functional.embedding(torch.tensor([ids])[:, where], runner.embed)
    group = runner.heads // runner.kv_heads
    at_window = runner.rotary(runner.embed[:1], torch.tensor([[window]]))
    outputs = []
    for block in runner.blocks:
        q, k, v = runner.project(block, h)  # (1, heads or kv_heads, positions, head_dim)
        q = _rotate(q, at_window[0][:, None], at_window[1][:, None])[0]
        k, v = k[0].repeat_interleave(group, 0), v[0].repeat_interleave(group, 0)
        out = torch.empty_like(q)
        for a in range(0, len(where), 256):
            p = where[a:a + 256, None]
            distance = p - where[None, :]
            visible = (distance >= 0) & ((distance < window) | (where[None, :] < n_global))
            distance = distance.clamp(0, window)
            cos, sin = runner.rotary(runner.embed[:1], (window - distance).reshape(1, -1))
            cos, sin = (x.view(*distance.shape, -1) for x in (cos, sin))
            keys = _rotate(k[:, None], cos, sin)  # (heads, queries, keys, head_dim)
            scores = torch.einsum("hqd,hqkd->hqk", q[:, a:a + 256], keys) / q.shape[-1] ** 0.5
            weights = scores.masked_fill(~visible, float("-inf")).softmax(-1)
            out[:, a:a + 256] = weights @ v
        h = runner.finish(block, h, out[None])
        outputs.append(h[0, -last:])
    return outputs


def test_far_past_the_models_positions_each_layer_reads_what_lambda_attention_defines(
        engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = engine.batcher.runner
    for block in runner.blocks:  # sharper attention than random weights give, so that a
        block.qkv.mul_(8)  # score at a wrong distance shows in the output
    ids = torch.randint(0, 49152, (20_000,), generator=torch.Generator().manual_seed(0))
    outputs: list[torch.Tensor] = []
    finish = runner.finish
    monkeypatch.setattr(runner, "finish",
                        lambda *a, **k: outputs.append(finish(*a, **k)) or outputs[-1])
    with torch.inference_mode():
        LambdaReader(runner, window=256, n_global=10).read(ids.tolist())
        last = outputs[-len(runner.blocks):]
        reference = lambda_reference(runner, ids.tolist(), 256, 10, last[0].shape[1])
    for layer, (read, expected) in enumerate(zip(last, reference)):
        assert torch.allclose(read[0], expected, atol=1e-5), f"layer {layer}"
