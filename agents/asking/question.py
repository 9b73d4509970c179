"""A question being answered, and what every way of answering it shares: the prompt and
its room, recall, the evidence that fits, the answer item and its citations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory import kv
from mempipe.memory.query import asks_for_someone, phrases
from mempipe.memory.store import Passage, Store, with_neighbours
from mempipe.pipes.answers import MAX_OPTIONS, names
from mempipe.pipes.context import Context
from mempipe.pipes.relevance import focus

SYSTEM = kv.SYSTEM  # one framing for text and memories: memories are computed in it
PROMPT = kv.prompt("{question}").replace(kv.MEMORIES, "{text}")
PINNED_CHARS = 60    # a quotation in the question pins the evidence to its one sentence
WIDE_CHARS = 400     # otherwise: a few sentences from each of the best passages
WIDE_PASSAGES = 3

Recalled = list[tuple[Store, list[Passage]]]  # each recalled passage with its neighbours


@dataclass(frozen=True)
class Question:
    """What `ask` was asked, and how: its options as the tiers read them."""

    text: str
    from_: str | None  # namespaces to recall from
    k: int             # passages to recall
    max_tokens: int
    budget: int
    reretrieve: int = 0

    def prompt(self, evidence: list[Item]) -> str:
        return PROMPT.format(text="\n\n".join(w.text for w in evidence), question=self.text)

    def room(self, ctx: Context) -> int:
        """Tokens the prompt has for evidence."""
        return ctx.room(self.max_tokens, self.prompt([]), SYSTEM)

    def fit(self, windows: list[Item], ctx: Context) -> list[Item]:
        """The best windows that fit the prompt's room, best first."""
        room = self.room(ctx)
        chosen, used = [], 0
        for window, size in zip(windows, ctx.count_tokens([w.text for w in windows])):
            if used + size + 2 <= room:
                chosen.append(window)
                used += size + 2
        if not chosen:
            raise UsageError(f"--budget {self.budget} leaves no room for any evidence")
        return chosen

    def answer(self, text: str, evidence: list[Item], **meta: Any) -> Item:
        """The answer as an item, citing the evidence it was read from."""
        sources = [{"source": w.source, "span": w.span} for w in evidence]
        return Item.combined(text, evidence, question=self.text, sources=sources, **meta)

    def recall(self, ctx: Context, query: str | None = None) -> Recalled:
        """Passages recalled for `query` (the question unless given) from the namespaces
        and from what this run read, each with the passages around it in its document."""
        query = query or self.text
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
    return await ctx.choose(prompt, options, system=SYSTEM, **given)


def joined(passages: list[Passage]) -> Item:
    """Neighbouring passages as one item spanning them all."""
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
