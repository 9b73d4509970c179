"""ask: answer a question from memory: recall passages, focus them to the sentences that
bear on the question, answer from those in a tight context, cite what was used."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import anyio
from pydantic import Field

from mempipe.engine.base import GLOBAL_TOKENS
from mempipe.errors import StageError, UsageError
from mempipe.item import Item
from mempipe.memory import Memory, kv, params, reader
from mempipe.memory.embed import default_embedder
from mempipe.memory.query import asks_for_someone, phrases
from mempipe.memory.store import Passage, Store, with_neighbours
from mempipe.pipes import reading
from mempipe.pipes.answers import MAX_OPTIONS, names
from mempipe.pipes.cleanup import cut_loop
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import ReduceAgent
from mempipe.pipes.relevance import focus

SYSTEM = kv.SYSTEM  # one framing for both tiers: memories are computed in it
PROMPT = kv.prompt("{question}").replace(kv.MEMORIES, "{text}")
PINNED_CHARS = 60    # a quotation in the question pins the evidence to its one sentence
WIDE_CHARS = 400     # otherwise: a few sentences from each of the best passages
WIDE_PASSAGES = 3
ABSTAINED = "The text does not say."
EVIDENCE_SENTENCES = 3  # a general question reads the few sentences that bear most on it


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
        "question itself), else memories when every recalled passage has one and a "
        "memory reader is trained, else text")
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
        if self.reretrieve and self.tier != "kv":
            raise UsageError("--reretrieve swaps key/value memories: use it with --tier kv")
        if self.stream_context:
            yield await self._read_whole(piped, ctx)
            return
        if self.tier == "params":
            yield await self._from_params(ctx, await self._adapted(ctx, strict=True))
            return
        adapted = await self._adapted(ctx) if self.tier == "auto" else None
        if adapted and (sure := await self._from_params(ctx, adapted, sure=True)):
            yield sure
            return
        if self.from_ is None and not ctx.scratch:
            raise UsageError("nothing to answer from")
        if self.tier == "kv" and self.from_ is None:
            raise UsageError("--tier kv reads a namespace's memories: name it with --from")
        groups = await anyio.to_thread.run_sync(self._recall, ctx)
        if not groups:
            raise UsageError(f"nothing in {self.from_ or 'the input'} bears on the question")
        contexts = [joined(group) for _, group in groups]
        if self.tier == "kv" or (self.tier == "auto" and await self._kv_ready(groups, ctx)):
            yield await self._from_memories(groups, contexts, ctx)
            return
        if phrases(self.question):
            yield await self._who_said(contexts, ctx)
        else:  # what was piped in is read whole where it fits; memory adds what it lacks
            fits = sum(ctx.count_tokens([i.text for i in piped])) <= self._room(ctx) // 2
            yield await self._read((piped if fits else []) + contexts, ctx)

    async def _who_said(self, contexts: list[Item], ctx: Context) -> Item:
        """A question that quotes: its evidence is the one sentence holding the quotation,
        and for a question that asks for someone, the model chooses among its names."""
        ctx.note("answered from text")
        evidence = self._fit(best_windows(self.question, contexts)[:1], ctx)
        options = []
        if asks_for_someone(self.question):
            options = names(" ".join(w.text for w in evidence), self.question)[:MAX_OPTIONS]
        if options:
            answer, _ = await best_of(ctx, self._prompt(evidence), options)
        else:
            answer = cut_loop(await ctx.generate(self._prompt(evidence), system=SYSTEM,
                                                 max_tokens=self.max_tokens))
        return self._answer(answer, evidence)

    async def _read(self, texts: list[Item], ctx: Context) -> Item:
        """Any other question: the sentences that bear most on it are its evidence (never
        a heading). For a question that asks for someone the model chooses among the
        names they hold; otherwise it writes, loops cut. Where what it wrote only echoes
        the question or says what the evidence does not, it chooses among the best
        sentence's short spans instead, and where it is unsure even of those, abstains."""
        found = await anyio.to_thread.run_sync(reading.evidence, self.question, texts,
                                               default_embedder(), EVIDENCE_SENTENCES)
        if not found:
            raise UsageError(f"nothing in {self.from_ or 'the input'} bears on the question")
        ctx.note("answered from text")
        evidence = self._fit(found, ctx)
        shown = " ".join(w.text for w in evidence)
        options = []
        if reading.kind_of(self.question) == "person":
            options = names(shown, self.question)[:MAX_OPTIONS]
        if options:
            chosen, _ = await best_of(ctx, self._prompt(evidence), options)
            return self._answer(chosen, evidence, options=len(options))
        written = cut_loop(await ctx.generate(self._prompt(evidence), system=SYSTEM,
                                              max_tokens=self.max_tokens))
        if reading.grounded(written, shown, self.question):
            return self._answer(written, evidence)
        # What it wrote is not what the evidence says: it chooses among the best
        # sentence's own short spans instead, if it is sure enough of one.
        best = evidence[:1]
        options = reading.spans(best[0].text, self.question)[:reading.MAX_SPANS]
        chosen, score = await best_of(ctx, self._prompt(best), options) if options \
            else ("", -math.inf)
        sureness = math.exp(score)
        if sureness < reading.SURE:
            ctx.note(f"{written!r} is not what the evidence says, so abstained")
            return self._answer(ABSTAINED, evidence, abstained=True, written=written)
        ctx.note(f"chose {chosen!r} ({sureness:.2f}): {written!r} is not what the evidence says")
        return self._answer(chosen, best, options=len(options), confidence=round(sureness, 3))

    def _answer(self, answer: str, evidence: list[Item], **meta: Any) -> Item:
        sources = [{"source": w.source, "span": w.span} for w in evidence]
        return Item.combined(answer, evidence, question=self.question, sources=sources,
                             **meta)

    async def _from_memories(self, groups: list[tuple[Store, list[Passage]]],
                             contexts: list[Item], ctx: Context) -> Item:
        """The answer read from the recalled passages' stored keys and values. With
        --reretrieve N, every N tokens written the passages are recalled again for the
        question and the answer so far, and the answer goes on from their memories."""
        engine = kv.engine_for_kv(ctx.engine)
        model = await anyio.to_thread.run_sync(lambda: engine.fingerprint)
        adapter = await anyio.to_thread.run_sync(reader.load, engine)
        options = names_for(self.question, contexts)
        reserved = max(ctx.count_tokens(options), default=0)
        prompt, memories = await self._reading(groups, model, reserved, ctx, warn=True)
        if not memories:  # every one was corrupt: the passages are read as text
            adapter = None
        elif adapter is None:
            ctx.warn("no memory reader trained for this model, so memories read less well "
                     "than text: mempipe memory train-reader NAMESPACE")
        read = list(contexts)
        if options:
            answer, _ = await best_of(ctx, prompt, options, memories=memories, adapter=adapter)
        else:
            answer, left = "", self.max_tokens
            while left > 0:
                result = await ctx.complete(prompt, system=SYSTEM, memories=memories,
                                            max_tokens=min(left, self.reretrieve or left),
                                            adapter=adapter, begun=answer)
                answer, left = answer + result.text, left - result.completion_tokens
                if result.finish_reason == "stop" or left <= 0:
                    break
                groups = await anyio.to_thread.run_sync(self._recall, ctx,
                                                        f"{self.question} {answer}")
                read += [joined(group) for _, group in groups]
                prompt, memories = await self._reading(groups, model, 0, ctx)
        seen, sources = set(), []
        for c in read:
            if (c.source, c.span) not in seen:
                seen.add((c.source, c.span))
                sources.append({"source": c.source, "span": c.span})
        ctx.note("answered from kv" + (" with the memory reader" if adapter else ""))
        return Item.combined(answer, contexts, question=self.question, sources=sources,
                             tier="kv")

    async def _adapted(self, ctx: Context, strict: bool = False) -> tuple[str, Any] | None:
        """The namespace --from names and its adapter: for --tier params (`strict`: what
        is missing is an error) or to try first (None when there is no fresh one)."""
        if not strict and (self.from_ is None or "adapters" not in ctx.engine.capabilities):
            return None  # nothing to try: no namespace named, or no local model
        store = Store()
        names = store.existing(self.from_) if self.from_ is not None else []
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

    async def _from_params(self, ctx: Context, adapted: tuple[str, Any],
                           sure: bool = False) -> Item | None:
        """The answer from the namespace's adapter (tier 3): nothing recalled, nothing
        read, so it comes as fast as a question alone. With `sure` (--tier auto), only an
        answer the adapter was sure of (the geometric mean of its tokens' probabilities)
        to a question it was taught (`params.knows`): it is as sure of what it never
        learned."""
        name, adapter = adapted
        if sure and not params.knows(adapter, self.question):
            ctx.note("the adapter was never taught this question, so recalled")
            return None
        result = await ctx.complete(params.PROMPT.format(question=self.question),
                                    system=SYSTEM, max_tokens=self.max_tokens, adapter=adapter)
        said = "answered from params"
        if sure:
            sureness = math.exp(result.logprob or -math.inf) if result.text.strip() else 0.0
            if sureness < params.CONFIDENT:
                ctx.note(f"the adapter was unsure ({sureness:.2f}), so recalled")
                return None
            said += f" (confidence {sureness:.2f})"
        ctx.note(said)
        return Item(text=result.text, source=name, meta={"question": self.question,
                                                         "tier": "params"})

    async def _kv_ready(self, groups: list[tuple[Store, list[Passage]]], ctx: Context) -> bool:
        """Whether memories should be read in place of text: every recalled passage has
        one from these weights and a memory reader is trained (without one, text reads
        better)."""
        if self.from_ is None or ctx.scratch or "memories" not in ctx.engine.capabilities:
            return False
        engine = ctx.engine
        model = await anyio.to_thread.run_sync(lambda: engine.fingerprint)
        if await anyio.to_thread.run_sync(reader.load, engine) is None:
            return False
        store = groups[0][0]
        held = await anyio.to_thread.run_sync(store.kv_held, store.existing(self.from_))
        return all(held.get(p.id, (0, ""))[1] == model for _, group in groups for p in group)

    async def _reading(self, groups: list[tuple[Store, list[Passage]]], model: str,
                       reserved: int, ctx: Context, warn: bool = False
                       ) -> tuple[str, list[Any]]:
        """The prompt and the memories it reads: the groups' stored memories, best groups
        first while they fit the budget less `reserved` tokens; a passage with no memory,
        or a corrupt one (warned), is read as text after them."""
        store = groups[0][0]
        ids = [p.id for _, group in groups for p in group]
        blobs, corrupt = await anyio.to_thread.run_sync(store.kv, ids)
        if corrupt and warn:
            ctx.warn(f"{len(corrupt)} stored memories fail their checksum; their passages "
                     "are read as text")
        if not blobs and not corrupt:
            raise UsageError(f"{self.from_} holds no key/value memories for these passages: "
                             "remember it with --tier kv")
        room = self._room(ctx) - reserved
        memories: list[Any] = []
        after: list[str] = []
        used = 0
        for _, group in groups:
            loaded = [kv.load(blobs[p.id], model) if p.id in blobs else p.text for p in group]
            size = sum(int(m.keys[0].shape[1]) for m in loaded if not isinstance(m, str))
            size += sum(ctx.count_tokens([m for m in loaded if isinstance(m, str)]))
            if used + size > room:
                break
            used += size
            memories += [m for m in loaded if not isinstance(m, str)]
            after += [m for m in loaded if isinstance(m, str)]
        if not memories and not after:
            raise UsageError(f"--budget {self.budget} leaves no room for any memory")
        prompt = kv.prompt(self.question, "".join(after))
        return (prompt if memories else prompt.replace(kv.MEMORIES, "")), memories

    async def _read_whole(self, piped: list[Item], ctx: Context) -> Item:
        """The answer from the model reading all the input, no memory involved: it attends
        to the first tokens and to a window of the latest, as wide as the budget allows."""
        if self.from_ is not None:
            raise UsageError("--stream-context reads the input; it cannot be used with --from")
        if not piped:
            raise UsageError("nothing to answer from: --stream-context reads the input")
        window = self.budget - self.max_tokens - GLOBAL_TOKENS
        answer = await ctx.generate(self._prompt(piped), system=SYSTEM, window=window,
                                    max_tokens=self.max_tokens)
        sources = [{"source": i.source, "span": i.span} for i in piped]
        return Item.combined(answer, piped, question=self.question, sources=sources)

    def _prompt(self, evidence: list[Item]) -> str:
        return PROMPT.format(text="\n\n".join(w.text for w in evidence), question=self.question)

    def _room(self, ctx: Context) -> int:
        return ctx.room(self.max_tokens, self._prompt([]), SYSTEM)

    def _fit(self, windows: list[Item], ctx: Context) -> list[Item]:
        """The best windows that fit the prompt's room, best first."""
        room = self._room(ctx)
        chosen, used = [], 0
        for window, size in zip(windows, ctx.count_tokens([w.text for w in windows])):
            if used + size + 2 <= room:
                chosen.append(window)
                used += size + 2
        if not chosen:
            raise UsageError(f"--budget {self.budget} leaves no room for any evidence")
        return chosen

    def _recall(self, ctx: Context, query: str | None = None
                ) -> list[tuple[Store, list[Passage]]]:
        """Passages recalled for `query` (the question unless given), each widened by the
        passages around it in its document."""
        query = query or self.question
        found: list[tuple[Store, Passage]] = []
        if self.from_ is not None:
            store = Store()
            found += [(store, p) for p in store.search(store.existing(self.from_), query,
                                                       self.k)]
        if ctx.scratch:
            found += [(ctx.scratch.store, p) for p in ctx.scratch.recall(query, self.k)]
        return with_neighbours(found)


async def best_of(ctx: Context, prompt: str, options: list[str], **given: Any
                  ) -> tuple[str, float]:
    """The option the model would most likely reply to `prompt`, and its mean token
    log-probability; `given` as for `Context.choose` (memories, adapter)."""
    scores = await ctx.choose(prompt, options, system=SYSTEM, **given)
    best = max(range(len(options)), key=lambda i: scores[i])
    return options[best], scores[best]


def joined(passages: list[Passage]) -> Item:
    first = passages[0]
    return Item(text="".join(p.text for p in passages), source=first.source,
                span=(first.span[0], passages[-1].span[1]), meta={"namespace": first.namespace})


def best_windows(question: str, contexts: list[Item]) -> list[Item]:
    """Each context focused to its sentences that bear on the question, best first: the
    one quoted sentence when the question quotes, else a few sentences."""
    chars = PINNED_CHARS if phrases(question) else WIDE_CHARS
    return sorted((focus(question, c, chars) for c in contexts), key=lambda w: -(w.score or 0.0))


def names_for(question: str, contexts: list[Item]) -> list[str]:
    """The names `ask` chooses among for a who-question (none for another question): the
    most mentioned in the best window (a quoted question) or the best few."""
    if not asks_for_someone(question):
        return []
    windows = best_windows(question, contexts)[:1 if phrases(question) else WIDE_PASSAGES]
    return names(" ".join(w.text for w in windows), question)[:MAX_OPTIONS]


TEACHER_TOKENS = 24  # a fact to teach is a few words


def teacher(namespace: str, engine: Any) -> params.Teacher:
    """How training asks a namespace a question (memory/params.py): `ask --tier text`'s
    answer, or "" where it abstained or found nothing that bears on the question: neither
    is a fact to teach."""

    async def answer(question: str) -> str:
        agent = Ask(question=question, **{"from": namespace}, tier="text",
                    max_tokens=TEACHER_TOKENS)
        try:
            said = [item async for item in agent.pipeline().stream(engine=engine)]
        except StageError as error:
            if isinstance(error.cause, UsageError):
                return ""
            raise
        return "" if any(i.meta.get("abstained") for i in said) else \
            " ".join(" ".join(i.text for i in said).split())

    return answer
