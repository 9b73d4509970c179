"""summarize: hierarchical map-reduce, so any length of input fits a small context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import Field

from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.pipes.cleanup import cut_loop, trim_words
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import ReduceAgent

SYSTEM = "You summarize texts faithfully, naming the people involved."
PIECE = ("{text}\n\n---\nSummarize the text above in at most {words} words. "
         "Say who appears in it and what happens.")
# The instruction comes first and is restated: a small model told only after the text
# copies the last summary it read, so the whole summary drifts to the input's end.
MERGE = ("Write one short paragraph that retells the whole text below from beginning to end, "
         "in at most {words} words. Begin with its main character.\n\n{text}\n\n---\n"
         "Now the paragraph, beginning with the main character:")
TOKENS_PER_WORD = 1.6
# A 135M model summarizes 500 tokens faithfully and 1,700 tokens with invented names and
# loops (measured on Alice in Wonderland): read in small pieces, merge in small groups.
PIECE_TOKENS = 512
PIECE_WORDS = 50
GROUP = 4
# Tokens a summary takes in a merge beyond its own: its number, the blank line before it,
# and a token or two its text may gain when tokenized again.
NUMBERING = 8


class Summarize(ReduceAgent):
    """Summarize everything piped in: pieces first, then summaries of summaries."""

    name: ClassVar[str] = "summarize"

    words: int = Field(default=150, ge=10, le=1000, description="length of the summary, words")

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        collected = [item async for item in items]
        if not collected:
            raise UsageError("nothing to summarize")
        final_tokens = _tokens_for(self.words)
        room = ctx.room(final_tokens, MERGE.format(text="", words=self.words), SYSTEM)
        if room < 2 * (final_tokens + NUMBERING):  # every merge takes two summaries or more
            raise UsageError(f"--words {self.words} leaves no room in a --budget of "
                             f"{self.budget} tokens")

        async def summarize(prompt: str, text: str, words: int) -> str:
            reply = await ctx.generate(prompt.format(text=text, words=words), system=SYSTEM,
                                       max_tokens=_tokens_for(words))
            return trim_words(cut_loop(reply), words)

        pieces = [p for item in collected for p in ctx.chunks(item, min(room, PIECE_TOKENS))]
        if len(pieces) == 1:
            text = await summarize(PIECE, pieces[0].text, self.words)
            yield Item.combined(text, collected, pieces=1, levels=1)
            return
        piece_words = min(PIECE_WORDS, self.words)
        summaries = await ctx.map(lambda p: summarize(PIECE, p.text, piece_words), pieces,
                                  f"summarize {len(pieces)} pieces")
        level = 1
        while len(summaries) > 1:
            groups = _pack(summaries, room, ctx)
            if len(groups) == len(summaries):  # no merge would shrink the level: never loop
                raise UsageError(f"--words {self.words}: summaries too long to merge two at "
                                 f"a time in a --budget of {self.budget} tokens")
            level += 1
            summaries = await ctx.map(lambda g: summarize(MERGE, _numbered(g), self.words),
                                      groups, f"summarize level {level}: {len(groups)} groups")
        yield Item.combined(summaries[0], collected, pieces=len(pieces), levels=level)


def _numbered(texts: list[str]) -> str:
    return "\n\n".join(f"{i}. {text}" for i, text in enumerate(texts, 1))


def _tokens_for(words: int) -> int:
    return int(words * TOKENS_PER_WORD) + 16


def _pack(texts: list[str], room: int, ctx: Context) -> list[list[str]]:
    """Consecutive texts in groups of at most GROUP whose numbered size fits `room` tokens.
    A summary is at most its `max_tokens`, and room holds two of those numbered, so each
    group but a last odd one has two or more, and each level shrinks."""
    sizes = [size + NUMBERING for size in ctx.count_tokens(texts)]
    groups: list[list[str]] = []
    used = 0
    for text, size in zip(texts, sizes):
        if groups and len(groups[-1]) < GROUP and used + size <= room:
            groups[-1].append(text)
            used += size
        else:
            groups.append([text])
            used = size
    return groups
