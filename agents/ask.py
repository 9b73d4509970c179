"""ask: answer a question from memory or from what was piped in: recall passages, find
the sentences that bear on the question, answer from those in a tight context, cite what
was used. Which way it answers (a tier, or the whole input at once) is chosen here, in
`Ask.reduce`; each way is a module of agents/asking/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import anyio
from pydantic import Field

from mempipe.agents.asking import kv, text, whole
from mempipe.agents.asking import params as adapter
from mempipe.agents.asking.question import Question, joined
from mempipe.errors import StageError, UsageError
from mempipe.item import Item
from mempipe.memory import taught
from mempipe.memory.query import phrases
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import ReduceAgent

TEACHER_TOKENS = 24  # a fact to teach is a few words


class Ask(ReduceAgent):
    """Answer a question from memory (--from NS), or from what this run read and piped in."""

    name: ClassVar[str] = "ask"
    positional: ClassVar[tuple[str, ...]] = ("question",)

    question: str = Field(min_length=1, description="the question")
    from_: str | None = Field(default=None, alias="from",
                              description="namespaces to recall from (comma-separated)")
    k: int = Field(default=5, ge=1, le=50, description="passages to recall")
    max_tokens: int = Field(default=128, ge=1, description="length of the answer, tokens")
    tier: Literal["auto", "text", "kv", "params"] = Field(
        default="auto", description="params: answer with the adapter mempipe memory train "
        "made of the namespace, nothing recalled; kv: read the recalled passages' key/value "
        "memories (remember --tier kv), no prefill; text: read them as text; auto: the "
        "adapter when it is sure and was taught the question (who said a quote, or the "
        "question itself), else memories when every recalled passage has one and the "
        "memory reader was measured reading the namespace about as well as text, else text")
    reretrieve: int = Field(
        default=0, ge=0, description="with --tier kv: recall again every N tokens written, "
        "for the question and the answer so far, and go on from those memories (0: never)")
    stream_context: bool = Field(
        default=False, description="read the whole input in one pass, whatever its length "
        "(Λ-shaped attention over the last --budget tokens), instead of recalling from it")

    @property
    def needs_input(self) -> bool:
        return (self.from_ is None and self.tier != "params") or self.stream_context

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        piped = []
        async for item in items:
            ctx.scratch.add(item)
            piped.append(item)
        yield await self._answer(piped, ctx)

    async def _answer(self, piped: list[Item], ctx: Context) -> Item:
        """The one place a way of answering is chosen: the whole input (--stream-context),
        the adapter (--tier params, or auto when it is sure), memories (--tier kv, or auto
        when every recalled passage has one and the reader reads them well), else text."""
        question = Question(self.question, self.from_, self.k, self.max_tokens, self.budget,
                            self.reretrieve)
        if self.reretrieve and self.tier != "kv":
            raise UsageError("--reretrieve swaps key/value memories: use it with --tier kv")
        if self.stream_context:
            return await whole.answer(question, piped, ctx)
        if self.tier == "params":
            found = await adapter.adapted(question, ctx, strict=True)
            return await adapter.answer(question, ctx, found)  # type: ignore[arg-type,return-value]
        found = await adapter.adapted(question, ctx) if self.tier == "auto" else None
        if found and (sure := await adapter.answer(question, ctx, found, sure=True)):
            return sure
        if self.from_ is None and not ctx.scratch:
            raise UsageError("nothing to answer from")
        if self.tier == "kv" and self.from_ is None:
            raise UsageError("--tier kv reads a namespace's memories: name it with --from")
        groups = await anyio.to_thread.run_sync(question.recall, ctx)
        if not groups:
            raise UsageError(f"nothing in {self.from_ or 'the input'} bears on the question")
        contexts = [joined(group) for _, group in groups]
        if self.tier == "kv" or (self.tier == "auto" and await kv.ready(question, groups, ctx)):
            return await kv.answer(question, groups, contexts, ctx)
        if phrases(self.question):
            return await text.who_said(question, contexts, ctx)
        # What was piped in is read whole where it fits; memory adds what it lacks.
        fits = sum(ctx.count_tokens([i.text for i in piped])) <= question.room(ctx) // 2
        return await text.read(question, piped if fits else [], groups, ctx)


def teacher(namespace: str, engine: Any, tier: str = "text") -> taught.Teacher:
    """How training asks a namespace a question (memory/taught.py): `ask --tier TIER`'s
    answer, or "" where it abstained or found nothing that bears on the question: neither
    is a fact to teach. Given a page (the passage the question was made from), `ask` reads
    that text alone, as a reader with the page open, instead of recalling: recall is where
    `ask` loses most answers, and a lesson is only as right as its teacher."""

    async def answer(question: str, page: str = "") -> str:
        agent = Ask(question=question, **({} if page else {"from": namespace}),
                    tier="text" if page else tier, max_tokens=TEACHER_TOKENS)
        given = [Item(text=page, source=namespace)] if page else None
        try:
            said = [item async for item in agent.pipeline().stream(given, engine=engine)]
        except StageError as error:
            if isinstance(error.cause, UsageError):
                return ""
            raise
        return "" if any(i.meta.get("abstained") for i in said) else \
            " ".join(" ".join(i.text for i in said).split())

    return answer
