"""Int8 decoding (MEMPIPE_QUANTIZE=int8): steps read int8 copies of the weights, close to
the model's own, and a request still writes the same tokens alone or in a batch."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import torch

from mempipe.engine.int8 import Int8
from mempipe.engine.local import LocalEngine
from mempipe.errors import ModelError
from tests.mempipe.test_batching import gather, request


@pytest.fixture
def quantized(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> LocalEngine:
    monkeypatch.setenv("MEMPIPE_DTYPE", "float32")
    monkeypatch.setenv("MEMPIPE_QUANTIZE", "int8")
    return LocalEngine(str(tiny_model))


def test_an_int8_copy_is_within_half_a_step_of_the_weight() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 64)
    copy = Int8.of(weight)
    step = weight.abs().amax(1, keepdim=True) / 127
    assert ((copy.values.float() * copy.scales[:, None] - weight).abs() <= step / 2 + 1e-6).all()
    x = torch.randn(3, 1, 64)
    exact = x @ (copy.values.float() * copy.scales[:, None]).T
    assert torch.allclose(copy(x), exact, atol=1e-4)


def test_decoding_steps_read_the_int8_copies_and_stay_close(engine: LocalEngine,
                                                            monkeypatch) -> None:
    exact = engine.batcher.runner  # made before MEMPIPE_QUANTIZE is set
    monkeypatch.setenv("MEMPIPE_QUANTIZE", "int8")
    quick = LocalEngine(engine.name).batcher.runner
    assert quick.head_int8 is not None and set(quick.blocks[0].int8) == {
        "qkv", "out", "gate_up", "down"}
    assert exact.head_int8 is None and not exact.blocks[0].int8
    logits = []
    for runner in (exact, quick):
        runner.reserve(1, 64)
        with torch.inference_mode():
            runner.forward(0, torch.arange(3, 23)[None], torch.tensor([0]))
            hidden = runner.forward(0, torch.tensor([[7]]), torch.tensor([20]))[:, -1]
            logits.append(runner.logits(hidden, step=True))
    difference = (logits[0] - logits[1]).abs().max()
    assert 0 < difference < 0.05 * logits[0].std()


def test_int8_requests_write_what_each_writes_alone(quantized: LocalEngine) -> None:
    prompts = [f"Item {i}: " + "word " * (i * 37) for i in range(6)]
    alone = [anyio.run(quantized.generate, request(p)).text for p in prompts]
    together = anyio.run(gather, quantized, [request(p) for p in prompts])
    assert [r.text for r in together] == alone


def test_a_quantization_it_cannot_do_is_named(tiny_model: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEMPIPE_QUANTIZE", "int4")
    with pytest.raises(ModelError, match="MEMPIPE_QUANTIZE must be int8 or none, not int4"):
        _ = LocalEngine(str(tiny_model)).batcher


def test_an_int8_engine_trains_adapters_on_the_weights_themselves(quantized) -> None:
    """Training differentiates through the model: it never reads the int8 copies, whose
    kernel has no derivative (and decoding with the adapter then does)."""
    from mempipe.engine import Message

    asked = [Message(role="user", content="Who said it?")]
    adapter = quantized.new_adapter(2)
    losses = quantized.fit_adapter(adapter, [(asked, lambda: [], "the Queen")], epochs=2,
                                   lr=1e-2)
    assert len(losses) == 2 and losses[1] < losses[0]
    answered = anyio.run(quantized.generate, request("Who said it?").model_copy(
        update={"adapter": adapter}))
    assert answered.completion_tokens > 0
