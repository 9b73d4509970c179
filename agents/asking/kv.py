"""Tier 2: the recalled passages' stored key/value memories read in place of their text,
so they cost no prefill; read with the memory reader (memory/reader.py) where one is
trained for the weights."""

from __future__ import annotations

from typing import Any

import anyio

from mempipe.agents.asking.question import (
    SYSTEM,
    Question,
    Recalled,
    best_of,
    joined,
    names_for,
)
from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory import Memory, kv, reader
from mempipe.pipes.context import Context


async def ready(question: Question, groups: Recalled, ctx: Context) -> bool:
    """Whether memories should be read in place of text: every recalled passage has
    one from these weights, and a memory reader is trained and was measured on every
    namespace asked reading them about as well as their text (`reader.reads_well`)."""
    if question.from_ is None or ctx.scratch or "memories" not in ctx.engine.capabilities:
        return False
    engine = ctx.engine
    model = await anyio.to_thread.run_sync(lambda: engine.fingerprint)
    adapter = await anyio.to_thread.run_sync(reader.load, engine)
    if adapter is None:
        return False
    store = groups[0][0]
    names = [n.strip() for n in question.from_.split(",") if n.strip()]
    if not await anyio.to_thread.run_sync(
            lambda: all(reader.reads_well(adapter, Memory(n, store)) for n in names)):
        ctx.note("memories not read: the memory reader was not measured reading "
                 f"{question.from_} as well as its text")
        return False
    held = await anyio.to_thread.run_sync(store.kv_held, store.existing(question.from_))
    return all(held.get(p.id, (0, ""))[1] == model for _, group in groups for p in group)


async def answer(question: Question, groups: Recalled, contexts: list[Item],
                 ctx: Context) -> Item:
    """The answer read from the recalled passages' stored keys and values. With
    --reretrieve N, every N tokens written the passages are recalled again for the
    question and the answer so far, and the answer goes on from their memories."""
    engine = kv.engine_for_kv(ctx.engine)
    model = await anyio.to_thread.run_sync(lambda: engine.fingerprint)
    adapter = await anyio.to_thread.run_sync(reader.load, engine)
    options = names_for(question.text, contexts)
    reserved = max(ctx.count_tokens(options), default=0)
    prompt, memories = await _reading(question, groups, model, reserved, ctx, warn=True)
    if not memories:  # every one was corrupt: the passages are read as text
        adapter = None
    elif adapter is None:
        ctx.warn("no memory reader trained for this model, so memories read less well "
                 "than text: mempipe memory train-reader NAMESPACE")
    read = list(contexts)
    if options:
        said, _ = await best_of(ctx, prompt, options, memories=memories, adapter=adapter)
    else:
        said, left = "", question.max_tokens
        while left > 0:
            result = await ctx.complete(prompt, system=SYSTEM, memories=memories,
                                        max_tokens=min(left, question.reretrieve or left),
                                        adapter=adapter, begun=said)
            said, left = said + result.text, left - result.completion_tokens
            if result.finish_reason == "stop" or left <= 0:
                break
            groups = await anyio.to_thread.run_sync(question.recall, ctx,
                                                    f"{question.text} {said}")
            read += [joined(group) for _, group in groups]
            prompt, memories = await _reading(question, groups, model, 0, ctx)
    seen, sources = set(), []
    for c in read:
        if (c.source, c.span) not in seen:
            seen.add((c.source, c.span))
            sources.append({"source": c.source, "span": c.span})
    ctx.note("answered from kv" + (" with the memory reader" if adapter else ""))
    return Item.combined(said, contexts, question=question.text, sources=sources, tier="kv")


async def _reading(question: Question, groups: Recalled, model: str, reserved: int,
                   ctx: Context, warn: bool = False) -> tuple[str, list[Any]]:
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
        raise UsageError(f"{question.from_} holds no key/value memories for these passages: "
                         "remember it with --tier kv")
    room = question.room(ctx) - reserved
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
        raise UsageError(f"--budget {question.budget} leaves no room for any memory")
    prompt = kv.prompt(question.text, "".join(after))
    return (prompt if memories else prompt.replace(kv.MEMORIES, "")), memories
