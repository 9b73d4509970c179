"""ask: answer a question from what was piped in, narrowed to what bears on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import Field

from mempipe.agents.base import ReduceAgent
from mempipe.errors import UsageError
from mempipe.pipes.context import Context
from mempipe.pipes.item import Item
from mempipe.pipes.relevance import bm25

SYSTEM = "You answer questions about a text briefly, using only the text."
PROMPT = "{text}\n\n---\nUsing only the text above, answer briefly: {question}"
PASSAGE_TOKENS = 256  # small passages: a small model answers best from little, relevant text


class Ask(ReduceAgent):
    """Answer a question from the piped input; input over budget is narrowed to the
    passages most relevant to the question."""

    name: ClassVar[str] = "ask"
    positional: ClassVar[tuple[str, ...]] = ("question",)

    question: str = Field(min_length=1, description="the question")
    max_tokens: int = Field(default=128, ge=1, description="length of the answer, tokens")

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        collected = [item async for item in items]
        if not collected:
            raise UsageError("nothing to answer from")
        room = ctx.room(self.max_tokens, PROMPT.format(text="", question=self.question), SYSTEM)
        evidence = collected
        if sum(ctx.count_tokens([i.text for i in collected])) > room:
            evidence = _narrow(self.question, collected, room, ctx)
        text = "\n\n".join(i.text for i in evidence)
        answer = await ctx.generate(PROMPT.format(text=text, question=self.question),
                                    system=SYSTEM, max_tokens=self.max_tokens)
        yield Item.combined(answer, evidence, question=self.question)


def _narrow(question: str, items: list[Item], room: int, ctx: Context) -> list[Item]:
    """The passages most relevant to `question` that fit `room` tokens, in reading order."""
    passages = [p for item in items for p in ctx.chunks(item, PASSAGE_TOKENS)]
    scores = bm25(question, [p.text for p in passages])
    sizes = ctx.count_tokens([p.text for p in passages])
    chosen, used = [], 0
    for i in sorted(range(len(passages)), key=lambda i: -scores[i]):
        if used + sizes[i] + 2 <= room:
            chosen.append(i)
            used += sizes[i] + 2
    return [passages[i] for i in sorted(chosen)]
