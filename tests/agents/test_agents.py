"""Agents on a tiny random-weight model: the mechanics (budgets, chunking, map/reduce,
sources and spans), not the quality of the words, which the integration tests check."""

from typing import ClassVar

import pytest

from mempipe import Item, agent, ask, chunk, map, pipe, read, summarize
from mempipe.errors import StageError
from mempipe.pipes.registry import get
from mempipe.pipes.trace import Trace

TEXT = " ".join(f"Sentence number {i} tells of the White Rabbit and the Queen." for i in range(300))


def test_chunk_is_token_aware_and_keeps_spans(engine) -> None:
    pieces = chunk(tokens=100).pipeline().items(TEXT, engine=engine)
    assert len(pieces) > 10
    assert all(n <= 100 for n in engine.count_tokens([p.text for p in pieces]))
    assert all(TEXT[p.span[0]:p.span[1]] == p.text for p in pieces)
    assert [p.meta["chunk"] for p in pieces] == list(range(len(pieces)))


def test_summarize_reduces_hierarchically_within_budget(engine) -> None:
    trace = Trace()
    [summary] = summarize(words=20, budget=256).pipeline().items(TEXT, engine=engine,
                                                                 trace=trace)
    assert summary.meta["pieces"] > 10 and summary.meta["levels"] >= 2
    assert len(summary.text.split()) <= 20
    assert summary.span == (0, len(TEXT))
    assert all(c.tokens_in + 20 * 2 <= 256 for c in trace.calls)
    assert trace.stages[1].calls == len(trace.calls) > summary.meta["pieces"]


def test_summarize_refuses_a_word_limit_its_budget_cannot_hold(engine) -> None:
    with pytest.raises(StageError, match="--words 500 leaves no room in a --budget of 512"):
        summarize(words=500, budget=512).run(TEXT, engine=engine)


def test_ask_narrows_long_input_to_relevant_passages(engine) -> None:
    needle = "The secret password of the Cheshire Cat is marmalade."
    text = TEXT[: len(TEXT) // 2] + " " + needle + " " + TEXT[len(TEXT) // 2 :]
    [answer] = ask("What is the secret password of the Cheshire Cat?",
                   budget=512).pipeline().items(text, engine=engine)
    # Recalled, focused, cited: the best evidence is the sentence with the needle.
    best = answer.meta["sources"][0]
    assert best["source"] == "<input>"
    assert best["span"][0] <= text.index(needle) < best["span"][1] <= text.index(needle) + 400


def test_map_applies_to_each_item_and_splits_long_ones(engine) -> None:
    items = map("Shorten this.", max_tokens=8, budget=300).pipeline().items(
        ["short one", TEXT[:3000]], engine=engine)
    assert items[0].source == "<input>" and items[0].span == (0, 9)
    assert len(items) > 2  # the long item was cut into pieces, each mapped


def test_engine_refuses_a_prompt_over_budget(engine) -> None:
    @agent(budget=100)
    async def overflow(item, ctx):
        return await ctx.generate(item.text, max_tokens=10)

    with pytest.raises(StageError, match="exceeds its budget of 100 tokens"):
        overflow().run(TEXT, engine=engine)


def test_function_agents_work_in_python_and_dsl(tmp_path, engine) -> None:
    @agent(budget=512)
    async def shout(item: Item) -> str:
        """Upper-case every item."""
        return item.text.upper() + "!"

    assert get("shout") is shout
    assert shout().budget == 512 and shout.__doc__ == "Upper-case every item."
    path = tmp_path / "x.txt"
    path.write_text("hello")
    assert pipe(f"read {path} | shout") == read(str(path)) | shout()
    assert pipe(f"read {path} | shout").run(engine=engine) == "HELLO!"


def test_function_agents_can_call_the_model_and_drop_items(engine) -> None:
    class Seen:
        prompts: ClassVar[list[str]] = []

    @agent
    async def keep_long(item, ctx):
        if len(item.text) < 5:
            return None
        Seen.prompts.append(item.text)
        return await ctx.generate(f"Say: {item.text}", max_tokens=4)

    out = keep_long().pipeline().items(["tiny", "long enough"], engine=engine)
    assert len(out) == 1 and Seen.prompts == ["long enough"]


def test_summaries_at_their_longest_still_merge_two_at_a_time() -> None:
    from mempipe.agents.summarize import NUMBERING, _pack

    class Words:
        def count_tokens(self, texts: list[str]) -> list[int]:
            return [len(text.split()) for text in texts]

    longest = 40  # tokens: a summary's max_tokens
    texts = [" ".join(["word"] * longest)] * 5
    groups = _pack(texts, 2 * (longest + NUMBERING), Words())  # the least room allowed
    assert [len(group) for group in groups] == [2, 2, 1]
