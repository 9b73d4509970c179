"""Tier 3: the namespace's adapter (memory/params.py) answers with nothing recalled and
nothing read, so an answer comes as fast as the question alone."""

from __future__ import annotations

import math
import re
from typing import Any

import anyio

from mempipe.agents.asking.question import SYSTEM, Question
from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory import Memory, kv, params
from mempipe.memory.store import Store
from mempipe.pipes.context import Context
from mempipe.pipes.reading import kind_of

_WORD = re.compile(r"[\w'’]+")


async def adapted(question: Question, ctx: Context, strict: bool = False
                  ) -> tuple[str, Any] | None:
    """The namespace --from names and its adapter: for --tier params (`strict`: what
    is missing is an error) or to try first (None when there is no fresh one)."""
    if not strict and (question.from_ is None or "adapters" not in ctx.engine.capabilities):
        return None  # nothing to try: no namespace named, or an engine without adapters
    store = Store()
    names = store.existing(question.from_) if question.from_ is not None else []
    if len(names) != 1:
        if strict:
            raise UsageError("--tier params answers from one namespace's adapter: name "
                             "it with --from")
        return None
    engine = kv.engine_for_kv(ctx.engine)
    adapter, stale = await anyio.to_thread.run_sync(params.load, Memory(names[0], store),
                                                    engine)
    if adapter is None and strict:
        raise UsageError(f"{names[0]} has no adapter for this model: mempipe memory train "
                         f"{names[0]}")
    if stale and strict:
        ctx.warn(f"{names[0]} has changed since its adapter was trained: mempipe memory "
                 f"train {names[0]}")
    elif stale:
        ctx.note(f"{names[0]}'s adapter is stale, so not asked")
        return None
    return (names[0], adapter) if adapter is not None else None


async def answer(question: Question, ctx: Context, adapted: tuple[str, Any],
                 sure: bool = False) -> Item | None:
    """The answer from the namespace's adapter. With `sure` (--tier auto), only an
    answer the adapter was sure of (the geometric mean of its tokens' probabilities)
    to a question it was taught, or one that asks the same (`taught`): it is as sure of
    what it never learned."""
    name, adapter = adapted
    if sure and not await anyio.to_thread.run_sync(taught, adapter, Memory(name, Store()),
                                                   question.text):
        ctx.note("the adapter was never taught this question, so recalled")
        return None
    result = await ctx.complete(params.PROMPT.format(question=question.text),
                                system=SYSTEM, max_tokens=question.max_tokens, adapter=adapter)
    said = "answered from params"
    if sure:
        sureness = math.exp(result.logprob or -math.inf) if result.text.strip() else 0.0
        if sureness < params.CONFIDENT:
            ctx.note(f"the adapter was unsure ({sureness:.2f}), so recalled")
            return None
        said += f" (confidence {sureness:.2f})"
    ctx.note(said)
    return Item(text=result.text, source=name, meta={"question": question.text,
                                                     "tier": "params"})


def taught(adapter: Any, memory: Memory, question: str) -> bool:
    """Whether `adapter` was taught what `question` asks: as asked (`params.knows`), or,
    where it was measured answering other wordings as well as text (`params.by_meaning`),
    in other words: a taught question at least `params.SIMILAR` near it in meaning that
    asks for the same kind of answer (pipes/reading.py) about the same names (the
    capitalised words after the first: "Mrs. Darcy" is not "Mr. Darcy")."""
    if params.knows(adapter, question):
        return True
    if not params.by_meaning(adapter, memory):
        return False
    likeness, like = params.nearest(adapter, question)
    return likeness >= params.SIMILAR and kind_of(question) == kind_of(like) and \
        _names(question) <= {word.lower() for word in _WORD.findall(like)}


def _names(question: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(question)[1:] if word[0].isupper()}
