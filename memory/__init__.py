"""The shared memory tiers. `Memory("books")` is one namespace of the text tier:

    Memory("books").remember(open("book.txt").read(), source="book.txt")
    for passage in Memory("books").recall('who said "off with her head"', k=3): ...
"""

from __future__ import annotations

from collections.abc import Iterable

from mempipe.memory.segment import Segmenter
from mempipe.memory.store import Passage, Store, check_namespace
from mempipe.pipes.item import Item

__all__ = ["Memory", "Passage", "Segmenter", "Store"]


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

    def recall(self, query: str, k: int = 5) -> list[Passage]:
        """The `k` passages that best answer `query`, best first."""
        return self.store.search([self.namespace], query, k)

    def passages(self) -> list[Passage]:
        return self.store.passages(self.namespace)

    def forget(self) -> int:
        return self.store.forget(self.namespace)
