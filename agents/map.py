"""map: a free-form instruction applied to each item."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import MapAgent

PROMPT = "{text}\n\n---\n{instruction}"


class Map(MapAgent):
    """Apply an instruction to each item (items over budget: to each piece of it)."""

    name: ClassVar[str] = "map"
    positional: ClassVar[tuple[str, ...]] = ("instruction",)

    instruction: str = Field(min_length=1, description="what to do with each item")
    max_tokens: int = Field(default=256, ge=1, description="length of each output, tokens")

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        room = ctx.room(self.max_tokens, PROMPT.format(text="", instruction=self.instruction))
        pieces = ctx.chunks(item, room) if ctx.count_tokens([item.text])[0] > room else [item]

        async def apply(piece: Item) -> Item:
            prompt = PROMPT.format(text=piece.text, instruction=self.instruction)
            return piece.derived(await ctx.generate(prompt, max_tokens=self.max_tokens))

        return await ctx.map(apply, pieces)
