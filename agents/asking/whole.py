"""The whole input read in one pass, no memory involved: Λ-shaped attention to the first
tokens and to a window of the latest, as wide as the budget allows, whatever the length."""

from __future__ import annotations

from mempipe.agents.asking.question import SYSTEM, Question
from mempipe.engine.base import GLOBAL_TOKENS
from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.pipes.context import Context


async def answer(question: Question, piped: list[Item], ctx: Context) -> Item:
    if question.from_ is not None:
        raise UsageError("--stream-context reads the input; it cannot be used with --from")
    if not piped:
        raise UsageError("nothing to answer from: --stream-context reads the input")
    window = question.budget - question.max_tokens - GLOBAL_TOKENS
    said = await ctx.generate(question.prompt(piped), system=SYSTEM, window=window,
                              max_tokens=question.max_tokens)
    return question.answer(said, piped)
