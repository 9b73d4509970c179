"""Agents and the pipelines they make: a name, a context budget, options (pydantic
fields), one method; `|` joins agents into a Pipeline, built the same way from Python and
from the DSL.

Three kinds of agent, by how they see the stream:
- SourceAgent.produce(ctx) starts a stream (read).
- MapAgent.map(item, ctx) handles each item on its own; the runner runs them concurrently
  and keeps their order.
- ReduceAgent.reduce(items, ctx) consumes the whole stream (summarize, ask).
Options are the model's fields, so `Chunk(tokens=800)` and `chunk --tokens 800` are equal."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import ClassVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from mempipe.config import DEFAULT_BUDGET
from mempipe.engine.base import Engine
from mempipe.item import Item
from mempipe.pipes import registry
from mempipe.pipes.context import Context
from mempipe.pipes.run import Kind, run_stages
from mempipe.pipes.syntax import quote
from mempipe.pipes.trace import Trace
from mempipe.progress import Progress

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
        return Pipeline((self,)) | other

    def pipeline(self) -> Pipeline:
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


class Given(SourceAgent):
    """Items handed to `Pipeline.run(input=...)` from Python."""

    name: ClassVar[str] = "given"
    items: list[Item]

    async def produce(self, ctx: Context) -> AsyncIterator[Item]:
        for item in self.items:
            yield item


Input = str | Item | Iterable[str | Item] | None


@dataclass(frozen=True)
class Pipeline:
    """Agents in order. `run` gives the output text; `items` the output items; `stream`
    yields items as they are produced. With no source stage, input comes from `input`,
    else from stdin."""

    stages: tuple[Agent, ...]

    def __or__(self, other: Agent | Pipeline) -> Pipeline:
        more = other.stages if isinstance(other, Pipeline) else (other,)
        return Pipeline(self.stages + more)

    def __str__(self) -> str:
        return to_dsl(self)

    def run(self, input: Input = None, **options: object) -> str:
        """The output text, items separated by blank lines: what the CLI prints."""
        return _joined(self.items(input, **options))

    def items(self, input: Input = None, **options: object) -> list[Item]:
        async def collect() -> list[Item]:
            return [item async for item in self.stream(input, **options)]  # type: ignore[arg-type]

        return anyio.run(collect)

    async def arun(self, input: Input = None, **options: object) -> str:
        return _joined([item async for item in self.stream(input, **options)])  # type: ignore[arg-type]

    async def stream(self, input: Input = None, *, model: str | None = None,
                     engine: Engine | None = None, trace: Trace | None = None,
                     progress: Progress | None = None) -> AsyncIterator[Item]:
        """Output items as the last stage produces them."""
        from mempipe.engine import get_engine  # torch and the model load on a first run

        stages = self.with_source(input)
        send, receive = anyio.create_memory_object_stream[Item]()

        async def produce() -> None:
            async with send:
                await run_stages(stages, engine or get_engine(model), send.send,
                                 trace or Trace(), progress or Progress())

        # A task, not a task group: a caller that stops iterating early leaves this
        # generator to be closed later from another task, and a task group cannot be
        # exited from a task other than the one that entered it.
        task = asyncio.get_running_loop().create_task(produce())
        try:
            async with receive:
                async for item in receive:
                    yield item
            await task  # raises the stage's error, if one failed
        finally:
            task.cancel()

    def with_source(self, input: Input = None) -> tuple[Agent, ...]:
        """The stages to run: as they are when the first is a source, else fed `input`
        (or stdin when there is none)."""
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        if isinstance(self.stages[0], SourceAgent):
            if input is not None:
                raise ValueError(f"{self.stages[0].name} reads its own input; do not pass input")
            return self.stages
        if input is None and not self.stages[0].needs_input:
            return self.stages
        if input is None:
            fallback = self.stages[0].source_at_terminal
            if fallback and sys.stdin is not None and sys.stdin.isatty():
                return (registry.get(fallback)(), *self.stages)
            return (registry.get("read")(paths=["-"]), *self.stages)
        return (Given(items=_as_items(input)), *self.stages)


def _as_items(input: Input) -> list[Item]:
    values = [input] if isinstance(input, str | Item) else list(input or [])
    return [v if isinstance(v, Item) else Item(text=v, source="<input>", span=(0, len(v)))
            for v in values]


def _joined(items: list[Item]) -> str:
    return "\n\n".join(item.text for item in items)


def to_dsl(pipeline: Pipeline) -> str:
    """DSL text that parses back to `pipeline` (defaults left out)."""
    stages = []
    for agent in pipeline.stages:
        words = [agent.name]
        given = agent.model_dump(exclude_defaults=True, by_alias=True)
        for name in agent.positional:
            value = given.pop(name, None)
            values = value if isinstance(value, list) else [] if value is None else [value]
            words += [quote(str(v)) for v in values]
        for name, value in given.items():
            words.append(f"--{name.replace('_', '-')}={shlex.quote(str(value))}")
        stages.append(" ".join(words))
    return " | ".join(stages)
