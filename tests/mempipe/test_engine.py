from pathlib import Path

import anyio
import pytest
import torch

from mempipe.engine import GenerationRequest, Message, models
from mempipe.engine.local import LocalEngine
from mempipe.errors import BudgetExceeded, ModelError


def request(text: str, max_tokens: int = 12, budget: int = 2048) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)],
                             max_tokens=max_tokens, budget=budget, agent="test")


def test_greedy_output_matches_plain_transformers_generate(engine: LocalEngine) -> None:
    result = anyio.run(engine.generate, request("Tell me about the Queen of Hearts."))
    ids = engine.prompt_ids(request("Tell me about the Queen of Hearts.").messages)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([ids], device=engine.model.device),
                                    max_new_tokens=12, do_sample=False, output_scores=True,
                                    return_dict_in_generate=True)
    written = out.sequences[0, len(ids):]
    expected = engine.tokenizer.decode(written, skip_special_tokens=True).strip()
    assert result.text == expected
    assert result.prompt_tokens == len(ids) and result.completion_tokens == 12
    chosen = [float(step[0].log_softmax(-1)[token]) for step, token in zip(out.scores, written)]
    assert result.logprob == pytest.approx(sum(chosen) / len(chosen), abs=1e-4)


def test_budget_and_model_window_are_enforced(engine: LocalEngine) -> None:
    with pytest.raises(BudgetExceeded, match="exceeds its budget of 40 tokens"):
        anyio.run(engine.generate, request("word " * 50, budget=40))
    with pytest.raises(BudgetExceeded, match="exceed the model's 8192 positions"):
        anyio.run(engine.generate, request("word " * 8200, budget=100_000))


def test_missing_default_model_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(models, "default_gguf", lambda: None)
    with pytest.raises(ModelError, match="run `mempipe models install`"):
        models.resolve(models.DEFAULT_MODEL)


def test_a_path_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not a model: .* holds config\.json"):
        models.resolve(str(tmp_path))
    with pytest.raises(ModelError, match="unknown model: nonsense"):
        models.resolve("nonsense")
    assert models.resolve("org/some-model") == "org/some-model"


def test_models_lists_the_default_first(tiny_model: Path, monkeypatch) -> None:
    listed = models.installed()
    assert listed[0].name == models.DEFAULT_MODEL and listed[0].default
    monkeypatch.setenv("MEMPIPE_MODEL", str(tiny_model))
    assert [m.default for m in models.installed()] == [False, True]


def test_dtype_is_bf16_where_the_processor_has_it(tiny_model: Path, monkeypatch) -> None:
    engine = LocalEngine(str(tiny_model))
    cpu_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert engine.model.dtype == (torch.bfloat16 if cpu_bf16 else torch.float32)
    monkeypatch.setenv("MEMPIPE_DTYPE", "float64")
    with pytest.raises(ModelError, match="MEMPIPE_DTYPE must be one of"):
        _ = LocalEngine(str(tiny_model)).model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_in_bf16(tiny_model: Path) -> None:
    engine = LocalEngine(str(tiny_model))
    anyio.run(engine.generate, request("hello"))
    assert engine.device == "cuda" and engine.model.dtype == torch.bfloat16


def test_score_prefers_what_greedy_decoding_would_write(engine: LocalEngine) -> None:
    messages = [Message(role="user", content="Name a colour.")]
    request = GenerationRequest(messages=messages, max_tokens=1)
    ids = engine.prompt_ids(messages)
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0, -1]
    ranked = logits.argsort(descending=True).tolist()
    best, other = engine.tokenizer.decode([ranked[0]]), engine.tokenizer.decode([ranked[50]])
    scores = engine.score(request.messages, [other, best])
    assert scores[1] > scores[0]
    assert scores[1] == pytest.approx(float(logits.log_softmax(-1)[ranked[0]]), abs=1e-4)


def test_surprise_covers_a_text_longer_than_its_window(engine: LocalEngine) -> None:
    text = " ".join(f"word{i}" for i in range(600))
    tokens = engine.surprise(text, window=256)
    assert len(tokens) == engine.count_tokens([text])[0]
    assert tokens[0][0] == 0 and tokens[-1][1] == len(text)
    assert tokens[0][2] == 0.0 and all(s > 0 for _, _, s in tokens[1:])
    # Within the first window, the windowed pass equals one pass over the text.
    whole = engine.surprise(text, window=4096)
    assert [round(s, 4) for _, _, s in tokens[:256]] == [round(s, 4) for _, _, s in whole[:256]]
