"""Λ-shaped attention: the same tokens as full attention while the input fits its window,
the same answer whether read at once or a token at a time, and bounded memory beyond."""

from __future__ import annotations

import anyio
import pytest
import torch

from mempipe.engine import GenerationRequest, Message, lambda_attention
from mempipe.engine.lambda_attention import LambdaReader
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
