"""Continuous batching: requests join and leave one running batch, each fails alone, and
the batched lean forward pass writes what plain `transformers.generate` writes."""

from __future__ import annotations

import itertools

import anyio
import pytest
import torch
from pydantic import ValidationError

from mempipe.engine import GenerationRequest, Message
from mempipe.engine.local import LocalEngine
from mempipe.errors import BudgetExceeded


def request(text: str, max_tokens: int = 12, **settings: object) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)],
                             max_tokens=max_tokens, budget=4096, agent="test", **settings)


def reference(engine: LocalEngine, text: str, max_tokens: int) -> str:
    ids = engine.prompt_ids(request(text).messages)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([ids]), max_new_tokens=max_tokens,
                                    do_sample=False)
    return engine.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


async def gather(engine: LocalEngine, requests: list[GenerationRequest]) -> list[object]:
    """Each request's Generation, or the exception it raised, in order."""
    results: list[object] = [None] * len(requests)

    async def one(i: int) -> None:
        try:
            results[i] = await engine.generate(requests[i])
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    return results


def test_concurrent_requests_write_what_each_writes_alone(engine: LocalEngine) -> None:
    prompts = [f"Item {i}: " + "word " * (i * 37) for i in range(10)]
    expected = [reference(engine, p, 12) for p in prompts]
    steps = engine.batcher.steps
    results = anyio.run(gather, engine, [request(p) for p in prompts])
    assert [r.text for r in results] == expected
    # Ten requests of 12 tokens each took about 12 steps, not 120.
    assert engine.batcher.steps - steps <= 14


def test_space_the_cache_grows_by_may_hold_anything_until_it_is_read(
        engine: LocalEngine) -> None:
    """The cache grows without writing its new space (zeroing a long prompt's positions
    for every row at once stalled every decoding row); what lies there never reaches an
    answer, though attention multiplies the slots it masks."""
    runner = engine.batcher.runner
    long = engine.prompt_ids(request("a longer prompt, read first, " * 6).messages)
    short = engine.prompt_ids(request("short").messages)

    def decode_after_reading(left_there: float) -> torch.Tensor:
        runner.release()
        runner.reserve(2, len(long) + 1)
        for layer in runner.keys + runner.values:
            layer[:] = left_there  # nothing written yet: every row is clean to 0
        with torch.inference_mode():
            runner.forward(0, torch.tensor([long]), torch.tensor([0]))
            runner.forward(1, torch.tensor([short]), torch.tensor([0]))
            # the short row masks the positions only the long row has written
            step = torch.tensor([[long[-1]], [short[-1]]])
            return runner.forward(0, step, torch.tensor([len(long), len(short)]))

    garbage, zeros = decode_after_reading(float("nan")), decode_after_reading(0.0)
    runner.release()
    assert len(short) < len(long)
    assert not garbage.isnan().any()
    assert torch.equal(garbage, zeros)


def test_only_the_rows_a_pass_reads_are_cleaned(engine: LocalEngine) -> None:
    """A long prompt read in one row zeroes its own new positions, not every row's."""
    runner = engine.batcher.runner
    runner.release()
    runner.reserve(4, 256)
    for layer in runner.keys + runner.values:
        layer[:] = 7.0
    with torch.inference_mode():
        runner.forward(2, torch.tensor([list(range(5, 205))]), torch.tensor([0]))
    assert runner.clean == [0, 0, 200, 0]
    assert all(bool((layer[[0, 1, 3]] == 7.0).all()) for layer in runner.keys + runner.values)
    runner.release()


def test_a_short_request_leaves_before_a_long_one_it_joined(engine: LocalEngine) -> None:
    finished: list[str] = []

    async def main() -> None:
        async def one(name: str, req: GenerationRequest) -> None:
            await engine.generate(req)
            finished.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "long", request("a long one", max_tokens=60))
            while not engine.batcher.running or not engine.batcher.running[0].tokens:
                await anyio.sleep(0.001)
            tg.start_soon(one, "short", request("a short one", max_tokens=3))

    anyio.run(main)
    assert finished == ["short", "long"]


def test_a_bad_request_fails_alone(engine: LocalEngine) -> None:
    with pytest.raises(ValidationError):
        request("x", top_p=0.0)
    with pytest.raises(ValidationError):
        request("x", temperature=-1)
    requests = [request("first"), request("word " * 5000), request("third")]
    results = anyio.run(gather, engine, requests)
    assert isinstance(results[1], BudgetExceeded)
    assert [r.text for r in (results[0], results[2])] == [
        reference(engine, "first", 12), reference(engine, "third", 12)]


def test_sampling_settings_apply_per_request(engine: LocalEngine) -> None:
    greedy = request("pick", max_tokens=8)
    top1 = request("pick", max_tokens=8, temperature=1.5, top_k=1)
    hot = [request("pick", max_tokens=8, temperature=2.0, seed=s) for s in (7, 7, 8)]
    results = anyio.run(gather, engine, [greedy, top1, *hot])
    assert results[0].text == results[1].text  # top_k=1 samples the greedy token
    assert results[2].text == results[3].text  # one seed, one sample
    assert results[2].text != results[0].text


def test_streaming_pieces_add_up_and_stop_strings_cut(engine: LocalEngine) -> None:
    async def pieces(req: GenerationRequest) -> list[str]:
        return [piece async for piece in engine.stream(req)]

    whole = anyio.run(engine.generate, request("stream me", max_tokens=20))
    streamed = anyio.run(pieces, request("stream me", max_tokens=20))
    assert len(streamed) > 1 and "".join(streamed).strip() == whole.text
    middle = len(whole.text) // 2
    stop = whole.text[middle:middle + 3]
    cut = anyio.run(engine.generate, request("stream me", max_tokens=20, stop=[stop]))
    assert cut.text == whole.text[: whole.text.index(stop)].strip()
    assert cut.finish_reason == "stop"
    assert "".join(anyio.run(pieces, request("stream me", max_tokens=20, stop=[stop]))
                   ).strip() == cut.text


def test_cancelling_a_stream_frees_its_row(engine: LocalEngine) -> None:
    async def main() -> str:
        stream = engine.stream(request("endless", max_tokens=500))
        await stream.__anext__()
        await stream.aclose()
        return (await engine.generate(request("next", max_tokens=4))).text

    assert anyio.run(main) == reference(engine, "next", 4)
    assert engine.batcher.idle and engine.batcher.runner.rows == 0  # the cache is let go


def test_a_thousand_tiny_requests_complete_within_bounded_rows(engine: LocalEngine) -> None:
    rows: list[int] = []
    step = engine.batcher.step

    def watched_step() -> None:
        step()
        rows.append(engine.batcher.runner.rows)

    engine.batcher.step = watched_step
    results = anyio.run(gather, engine, [request(f"n{i}", max_tokens=2) for i in range(1000)])
    assert all(r.completion_tokens >= 1 for r in results)
    assert max(rows) <= engine.batcher.max_rows
    assert engine.batcher.idle


def test_a_long_prompt_is_read_in_chunks_between_the_others_decoding_steps(
        engine: LocalEngine) -> None:
    from mempipe.engine.batcher import Sequence

    batcher = engine.batcher
    texts = {"a": "first", "b": "second", "long": "word " * 900}
    sequences = {name: Sequence(request(text, max_tokens=200 if name != "long" else 12),
                                engine.prompt_ids(request(text).messages))
                 for name, text in texts.items()}
    for name in ("a", "b"):
        batcher.submit(sequences[name])
    batcher.step()  # both read and decoding
    batcher.submit(sequences["long"])
    reads = []
    while sequences["long"].unread:
        before = {name: len(sequences[name].tokens) for name in ("a", "b")}
        batcher.step()
        reads.append(sequences["long"].read)
        # Every step still gave each decoding request its token.
        assert all(len(sequences[n].tokens) == before[n] + 1 for n in ("a", "b"))
    assert len(reads) > 2 and not sequences["a"].done  # read a chunk a step
    while not sequences["long"].done:
        batcher.step()
    # Read in chunks, it writes what it writes read at once.
    assert sequences["long"].text(engine.tokenizer).strip() == reference(
        engine, texts["long"], 12)
    for sequence in sequences.values():
        sequence.cancel()
    batcher.step()


def test_read_cost_tells_the_part_per_token_from_the_average() -> None:
    from mempipe.engine.batcher import ReadCost

    cost = ReadCost()
    for tokens in (8, 16, 8, 16, 12):
        cost.add(tokens, 0.03 + 0.002 * tokens)
    per_token, average = cost.fit()
    assert per_token == pytest.approx(0.002) and average == pytest.approx(0.03 / 12 + 0.002)
    same = ReadCost()
    same.add(10, 0.05)
    same.add(10, 0.05)
    assert same.fit() == pytest.approx((0.005, 0.005))  # one size: nothing to tell apart


def chunks(fixed: float, per_token: float, step: float, steps: int) -> list[int]:
    """The chunk sizes a batcher chooses, step after step, where reading `n` prompt tokens
    costs `fixed + per_token * n` seconds and a decoding step `step`."""
    from mempipe.engine.batcher import Batcher

    batcher = Batcher(None, None, set(), max_rows=8, cache_bytes=0)  # type: ignore[arg-type]
    batcher.step_seconds, sizes = step, []
    for _ in range(steps):
        size = batcher._chunk()
        batcher.read_cost.add(size, fixed + per_token * size)
        batcher.steps += 1
        sizes.append(size)
    return sizes


def test_chunks_grow_where_reading_costs_about_the_same_at_any_size() -> None:
    """A GPU: launching the kernels is the cost, and 8 tokens cost what 4,000 do, so small
    chunks only make a long prompt take hundreds of steps."""
    from mempipe.engine.batcher import PREFILL_TOKENS

    sizes = chunks(fixed=0.035, per_token=2e-7, step=0.04, steps=24)
    assert max(sizes) == PREFILL_TOKENS
    assert all(b <= 2 * a for a, b in itertools.pairwise(sizes))  # at most doubling


def test_chunks_stay_about_one_decoding_step_where_tokens_cost() -> None:
    """A CPU: each token costs, so a chunk is kept to about one decoding step."""
    sizes = chunks(fixed=0.01, per_token=0.002, step=0.05, steps=24)
    assert all(0.01 + 0.002 * size <= 0.05 * 1.05 for size in sizes[8:])
    assert max(sizes[8:]) >= 15


def test_a_lone_greedy_request_checks_drafts_and_writes_what_it_writes_without(
        engine: LocalEngine) -> None:
    """A request decoding alone checks guessed tokens beside its newest one: it writes
    what plain greedy decoding writes, in fewer steps where it repeats itself (the random
    model loops)."""
    prompt = "Item 3: " + "word " * 30
    steps, sureness = {}, {}
    for drafts in (0, 7):
        engine.batcher.drafts = drafts
        before = engine.batcher.steps
        written = anyio.run(engine.generate, request(prompt, max_tokens=60))
        steps[drafts], sureness[drafts] = engine.batcher.steps - before, written.logprob
        assert written.text == reference(engine, prompt, 60)
        assert written.completion_tokens == 60
    assert steps[7] < steps[0] / 2
    assert sureness[7] == pytest.approx(sureness[0], abs=1e-4)
