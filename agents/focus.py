"""focus: narrow each item to the few sentences that bear on a question."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import MapAgent
from mempipe.pipes.relevance import focus


class Focus(MapAgent):
    """Narrow each item to the sentences that bear most on a question (no model call)."""

    name: ClassVar[str] = "focus"
    positional: ClassVar[tuple[str, ...]] = ("question",)

    question: str = Field(min_length=1, description="the question")
    chars: int = Field(default=150, ge=1, description="characters to keep at most, "
                       "beyond the best sentence")

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        return [focus(self.question, item, self.chars)]
