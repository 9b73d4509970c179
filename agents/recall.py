"""recall: passages from memory that answer a query, best first, with source and span."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import anyio
from pydantic import Field

from mempipe.item import Item
from mempipe.memory.store import Store
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import SourceAgent


class Recall(SourceAgent):
    """Recall the passages that best answer a query from a memory namespace."""

    name: ClassVar[str] = "recall"
    positional: ClassVar[tuple[str, ...]] = ("query",)

    query: str = Field(min_length=1, description="what to look for")
    from_: str = Field(default="default", alias="from",
                       description="namespaces to recall from (comma-separated)")
    k: int = Field(default=5, ge=1, le=1000, description="passages to recall")

    async def produce(self, ctx: Context) -> AsyncIterator[Item]:
        for passage in await anyio.to_thread.run_sync(self._search):
            yield passage.item()

    def _search(self) -> list:
        store = Store()
        return store.search(store.existing(self.from_), self.query, self.k)
