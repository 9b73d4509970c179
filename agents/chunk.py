"""chunk: token-aware, sentence-respecting pieces."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import MapAgent


class Chunk(MapAgent):
    """Cut each item into pieces of at most --tokens tokens, between sentences."""

    name: ClassVar[str] = "chunk"

    tokens: int = Field(default=800, ge=16, description="tokens per piece at most")
    overlap: int = Field(default=0, ge=0, description="tokens shared by neighbouring pieces")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Chunk:
        if self.overlap >= self.tokens:
            raise ValueError("--overlap must be smaller than --tokens")
        return self

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        return ctx.chunks(item, self.tokens, self.overlap)
