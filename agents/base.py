"""What an agent is: a name, a context budget, options (pydantic fields), one method.

Three kinds, by how they see the stream:
- SourceAgent.produce(ctx) starts a stream (read).
- MapAgent.map(item, ctx) handles each item on its own; the runner runs them concurrently
  and keeps their order.
- ReduceAgent.reduce(items, ctx) consumes the whole stream (summarize, ask).
Options are the model's fields, so `Chunk(tokens=800)` and `chunk --tokens 800` are equal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mempipe.config import DEFAULT_BUDGET
from mempipe.pipes.item import Item

if TYPE_CHECKING:
    from mempipe.pipes.context import Context
    from mempipe.pipes.pipeline import Pipeline

Kind = Literal["source", "map", "reduce"]
BUDGET_HELP = "context tokens, prompt and output together"


class Agent(BaseModel):
    """Base of every agent; its docstring's first line is what `mempipe agents` shows."""

    # populate_by_name: an option spelled `--from` in the DSL is `from_` in Python
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: ClassVar[str] = ""
    kind: ClassVar[Kind]
    positional: ClassVar[tuple[str, ...]] = ()  # fields that DSL arguments fill, in order
    # The source to start from when this agent comes first and stdin is a terminal
    # (`mempipe commit-msg` reads the staged diff); otherwise stdin is read.
    source_at_terminal: ClassVar[str | None] = None

    budget: int = Field(default=DEFAULT_BUDGET, ge=64, description=BUDGET_HELP)

    @property
    def needs_input(self) -> bool:
        """False when this agent, placed first, has all it needs without a source
        (`ask --from NS` answers from memory): stdin is then not read."""
        return True

    def __or__(self, other: Agent | Pipeline) -> Pipeline:
        from mempipe.pipes.pipeline import Pipeline

        return Pipeline((self,)) | other

    def pipeline(self) -> Pipeline:
        from mempipe.pipes.pipeline import Pipeline

        return Pipeline((self,))

    # The pipeline's running methods, so that a single agent runs like a pipeline.
    def run(self, input: object = None, **kwargs: object) -> str:
        return self.pipeline().run(input, **kwargs)  # type: ignore[arg-type]


class SourceAgent(Agent):
    kind: ClassVar[Kind] = "source"

    def produce(self, ctx: Context) -> AsyncIterator[Item]:
        raise NotImplementedError


class MapAgent(Agent):
    kind: ClassVar[Kind] = "map"
    concurrency: ClassVar[int] = 8  # items in flight at once

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        raise NotImplementedError


class ReduceAgent(Agent):
    kind: ClassVar[Kind] = "reduce"

    def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        raise NotImplementedError
