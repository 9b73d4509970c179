"""A run's own namespace: what `read` read (and what reached `ask`), so later stages can
recall it after a summary replaced it in the pipe. Lives in memory, indexed on first recall,
gone when the run ends."""

from __future__ import annotations

import threading

from mempipe.item import Item
from mempipe.memory.segment import Segmenter
from mempipe.memory.store import Passage, Store

NAMESPACE = "scratch"


class Scratch:
    def __init__(self) -> None:
        self._pending: list[Item] = []
        self._store: Store | None = None
        self._lock = threading.Lock()

    def add(self, item: Item) -> None:
        """Keep `item` for recall; costs nothing until something recalls."""
        with self._lock:
            self._pending.append(item)

    def __bool__(self) -> bool:
        return bool(self._pending) or self._store is not None

    @property
    def store(self) -> Store:
        """The run's store with everything added so far indexed (call from a thread)."""
        with self._lock:
            if self._store is None:
                self._store = Store(":memory:")
            pending, self._pending = self._pending, []
            segmenter = Segmenter()
            for item in pending:
                spans = segmenter.spans(item.text, self._store.embedder.count_tokens)
                if spans:
                    self._store.add(NAMESPACE, item, spans, versions=False)
            return self._store

    def recall(self, query: str, k: int) -> list[Passage]:
        return self.store.search([NAMESPACE], query, k)
