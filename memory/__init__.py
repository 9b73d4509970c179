"""The shared memory tiers. `Memory("books")` is one namespace of the text tier:

    Memory("books").remember(open("book.txt").read(), source="book.txt")
    for passage in Memory("books").recall('who said "off with her head"', k=3): ...
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from mempipe.engine import get_engine
from mempipe.item import Item
from mempipe.memory import kv
from mempipe.memory.segment import Segmenter
from mempipe.memory.store import Passage, Store, check_namespace

__all__ = ["Memory", "Passage", "Segmenter", "Store"]

KV_BATCH = 32  # passages computed and stored together


class Memory:
    """One namespace of the memory store: what is remembered there stays across runs."""

    def __init__(self, namespace: str, store: Store | None = None):
        self.namespace = check_namespace(namespace)
        self.store = store or Store()

    def remember(self, texts: str | Item | Iterable[str | Item], source: str = "<input>",
                 segmenter: Segmenter | None = None) -> int:
        """Cut each text into passages and index them; returns the passages added (texts
        already remembered, by content, add none)."""
        segmenter = segmenter or Segmenter()
        values = [texts] if isinstance(texts, str | Item) else list(texts)
        added = 0
        for value in values:
            item = value if isinstance(value, Item) else Item(text=value, source=source,
                                                              span=(0, len(value)))
            if not self.store.has(self.namespace, item.text):
                spans = segmenter.spans(item.text, self.store.embedder.count_tokens)
                added += self.store.add(self.namespace, item, spans)
        return added

    def encode_kv(self, engine: Any = None, setting: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  only: Collection[int] | None = None) -> int:
        """Compute, compress and store the key/value memory (tier 2, memory/kv.py) of
        every passage (or those with ids in `only`) that has none from this model in
        this setting (default `kv.DEFAULT`). Each batch is stored in one transaction.
        Returns the memories stored."""
        engine = kv.engine_for_kv(engine or get_engine())
        chosen = kv.Compression.parse(setting) if setting else kv.DEFAULT
        model = engine.fingerprint
        todo = [p for p in self.store.without_kv(self.namespace, model, chosen.name)
                if only is None or p.id in only]
        stored = 0
        for start in range(0, len(todo), KV_BATCH):
            part = todo[start:start + KV_BATCH]
            states = engine.read_passages(kv.framing(), [p.text for p in part])
            stored += self.store.add_kv({p.id: kv.compress(state, chosen, model)
                                         for p, state in zip(part, states)})
            if progress is not None:
                progress(start + len(part), len(todo))
        return stored

    def recall(self, query: str, k: int = 5) -> list[Passage]:
        """The `k` passages that best answer `query`, best first."""
        return self.store.search([self.namespace], query, k)

    def passages(self) -> list[Passage]:
        return self.store.passages(self.namespace)

    def forget(self) -> int:
        return self.store.forget(self.namespace)
