"""summarize: extract, then compress. The input is cut into consecutive parts, one per
sentence of the summary; from each part the sentences most central to it (and naming its
most mentioned people) are extracted, and the model retells them in one sentence. What it
writes is checked before it leaves the agent: a sentence naming someone its extract does
not, looping, or repeating an earlier one is replaced by the extract's own best sentence.
A small model retells a few sentences it was shown faithfully; asked to summarize
summaries, it invents (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import anyio
from pydantic import Field

from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory.embed import default_embedder
from mempipe.pipes import extracts
from mempipe.pipes.answers import names
from mempipe.pipes.cleanup import trim_words
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import ReduceAgent
from mempipe.pipes.reading import grounded

SYSTEM = "You retell texts faithfully and briefly, naming the people involved."
RETELL = ("{text}\n\n---\nRetell the text above in one sentence of at most {words} words. "
          "Say who does what.")
SENTENCE_WORDS = 22  # words per sentence of the summary: one sentence per part
TOKENS_PER_WORD = 1.6


class Summarize(ReduceAgent):
    """Summarize everything piped in: a sentence for each part, retold from its extract."""

    name: ClassVar[str] = "summarize"

    words: int = Field(default=150, ge=10, le=1000, description="length of the summary, words")

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        collected = [item async for item in items]
        if not any(item.text.strip() for item in collected):
            raise UsageError("nothing to summarize")
        per_sentence = min(SENTENCE_WORDS, self.words)
        max_tokens = int(per_sentence * TOKENS_PER_WORD) + 8
        room = ctx.room(max_tokens, RETELL.format(text="", words=per_sentence), SYSTEM)
        if room < max_tokens:
            raise UsageError(f"a --budget of {self.budget} tokens leaves no room to read "
                             f"a part of the input")
        parts = max(1, self.words // per_sentence)
        found = await anyio.to_thread.run_sync(
            extracts.extract, collected, parts, default_embedder(),
            ctx.count_tokens, room)
        if not found:
            raise UsageError("nothing to summarize: the input holds no sentences")

        async def retell(extract: extracts.Extract) -> str:
            written = await ctx.generate(RETELL.format(text=extract.text, words=per_sentence),
                                         system=SYSTEM, max_tokens=max_tokens)
            return extracts.first_sentence(written)

        written = await ctx.map(retell, found, f"summarize {len(found)} parts")
        kept: list[str] = []
        for extract, sentence in zip(found, written):
            why = _unfaithful(sentence, extract.text, kept)
            if why:
                ctx.note(f"part {extract.index + 1}: {why}; kept its own sentence instead")
                sentence = extract.best
            if sentence and sentence not in kept:
                kept.append(sentence)
        summary = trim_words(" ".join(kept), self.words)
        yield Item.combined(summary, collected, pieces=len(found), levels=1)


def _unfaithful(sentence: str, shown: str, before: list[str]) -> str:
    """Why a retold sentence may not leave the agent ("" where it may): it says nothing,
    names someone the text it was shown does not, or repeats an earlier sentence."""
    if len(sentence.split()) < extracts.RETOLD_WORDS:
        return "the retelling said nothing, or no whole sentence"
    if extracts.repeats_itself(sentence):
        return "the retelling repeats itself"
    if not grounded(sentence, shown, share=extracts.GROUNDED):
        return "the retelling says what its extract does not"
    invented = [n for n in names(sentence, "") if not extracts.named_in(n, shown)]
    if invented:
        return f"the retelling named {', '.join(invented)}, whom its extract does not"
    said = " ".join(sentence.lower().split())
    if any(said == " ".join(b.lower().split()) for b in before):
        return "the retelling repeated an earlier sentence"
    return ""
