"""A pipeline: stages joined by `|`, built the same way from Python and from the DSL."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import anyio

from mempipe.agents.base import Agent, SourceAgent
from mempipe.engine.base import Engine
from mempipe.pipes.item import Item
from mempipe.pipes.progress import Progress
from mempipe.pipes.trace import Trace

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
        from mempipe.pipes.build import to_dsl

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
        from mempipe.engine import get_engine
        from mempipe.pipes.run import run_stages

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
        from mempipe.agents import registry
        from mempipe.agents.read import Given, Read

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
            return (Read(paths=["-"]), *self.stages)
        return (Given(items=_as_items(input)), *self.stages)


def _as_items(input: Input) -> list[Item]:
    values = [input] if isinstance(input, str | Item) else list(input or [])
    return [v if isinstance(v, Item) else Item(text=v, source="<input>", span=(0, len(v)))
            for v in values]


def _joined(items: list[Item]) -> str:
    return "\n\n".join(item.text for item in items)
