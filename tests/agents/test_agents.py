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


def test_summarize_retells_each_part_within_budget_or_keeps_its_own_sentence(engine) -> None:
    trace = Trace()
    [summary] = summarize(words=60, budget=256).pipeline().items(TEXT, engine=engine,
                                                                 trace=trace)
    assert summary.meta["pieces"] == 60 // 22
    assert len(summary.text.split()) <= 60
    assert summary.span == (0, len(TEXT))
    assert all(c.tokens_in + 44 <= 256 for c in trace.calls)
    # A random model's retellings never pass the checks: every sentence is the input's.
    for sentence in summary.text.split(". "):
        assert sentence.rstrip(".") + "." in TEXT, sentence


def test_summarize_refuses_a_budget_that_holds_no_part(engine) -> None:
    with pytest.raises(StageError, match="a --budget of 64 tokens leaves no room"):
        summarize(words=100, budget=64).run(TEXT, engine=engine)


def test_summarize_refuses_input_without_sentences(engine) -> None:
    with pytest.raises(StageError, match="nothing to summarize"):
        summarize().run("CHAPTER I\n\nCHAPTER II", engine=engine)


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
