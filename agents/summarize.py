"""summarize: hierarchical map-reduce, so any length of input fits a small context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from mempipe.agents.base import ReduceAgent
from mempipe.pipes.chunking import trim_words
from mempipe.pipes.context import Context
from mempipe.pipes.item import Item
from pydantic import Field

from mempipe.errors import UsageError

SYSTEM = "You summarize texts faithfully, naming the people involved."
PIECE = ("{text}\n\n---\nSummarize the text above in at most {words} words. "
         "Say who appears in it and what happens.")
MERGE = ("Summaries of consecutive parts of one text:\n\n{text}\n\n---\nCombine these "
         "summaries into one summary of at most {words} words. Keep the names of the people.")
TOKENS_PER_WORD = 1.6


class Summarize(ReduceAgent):
    """Summarize everything piped in: pieces first, then summaries of summaries."""

    name: ClassVar[str] = "summarize"

    words: int = Field(default=150, ge=10, le=1000, description="length of the summary, words")

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        collected = [item async for item in items]
        if not collected:
            raise UsageError("nothing to summarize")
        max_tokens = int(self.words * TOKENS_PER_WORD) + 16
        room = ctx.room(max_tokens, PIECE.format(text="", words=self.words), SYSTEM)
        if room < 2 * max_tokens:
            raise UsageError(f"--words {self.words} leaves no room in a --budget of "
                             f"{self.budget} tokens")

        async def summarize(prompt: str, text: str) -> str:
            reply = await ctx.generate(prompt.format(text=text, words=self.words),
                                       system=SYSTEM, max_tokens=max_tokens)
            return trim_words(reply, self.words)

        pieces = [p for item in collected for p in ctx.chunks(item, room)]
        summaries = await ctx.map(lambda p: summarize(PIECE, p.text), pieces,
                                  f"summarize {len(pieces)} pieces")
        level = 1
        while len(summaries) > 1:
            groups = _pack(summaries, room, ctx)
            level += 1
            summaries = await ctx.map(lambda g: summarize(MERGE, "\n\n".join(g)), groups,
                                      f"summarize level {level}: {len(groups)} groups")
        yield Item.combined(summaries[0], collected, pieces=len(pieces), levels=level)


def _pack(texts: list[str], room: int, ctx: Context) -> list[list[str]]:
    """Consecutive texts grouped so each group, joined, fits `room` tokens; every group
    holds at least two texts when the texts are small enough, so each level shrinks."""
    sizes = ctx.count_tokens(texts)
    groups: list[list[str]] = []
    used = 0
    for text, size in zip(texts, sizes):
        if groups and used + size + 2 <= room:
            groups[-1].append(text)
            used += size + 2
        else:
            groups.append([text])
            used = size
    if len(groups) == len(texts):  # nothing merged: pair them up rather than loop forever
        groups = [texts[i : i + 2] for i in range(0, len(texts), 2)]
    return groups
