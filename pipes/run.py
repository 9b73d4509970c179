"""Running a pipeline: one task per stage, joined by bounded streams (backpressure).

The first stage to fail cancels the others and is named in the error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, cast, get_args

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from mempipe.engine.base import Engine
from mempipe.errors import StageError
from mempipe.item import Item
from mempipe.memory.scratch import Scratch
from mempipe.pipes.context import Context
from mempipe.pipes.trace import StageStats, Trace
from mempipe.progress import Progress

BUFFER = 16  # items a stage may run ahead of the next one
Kind = Literal["source", "map", "reduce"]
KINDS: tuple[Kind, ...] = get_args(Kind)


class Stage(Protocol):
    """What the runner runs: an agent (pipes/pipeline.py), told apart by its kind."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    budget: int


class SourceStage(Stage, Protocol):
    def produce(self, ctx: Context) -> AsyncIterator[Item]: ...


class MapStage(Stage, Protocol):
    concurrency: ClassVar[int]

    async def map(self, item: Item, ctx: Context) -> list[Item]: ...


class ReduceStage(Stage, Protocol):
    def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]: ...


async def run_stages(stages: Sequence[Stage], engine: Engine,
                     emit: Callable[[Item], Awaitable[None]], trace: Trace,
                     progress: Progress) -> None:
    """Run `stages` (the first one a source) and hand each output item to `emit`."""
    trace.stages = [StageStats(i, a.name) for i, a in enumerate(stages)]
    scratch = Scratch()
    try:
        async with anyio.create_task_group() as tg:
            upstream: ObjectReceiveStream[Item] | None = None
            for agent, stats in zip(stages, trace.stages):
                send, receive = anyio.create_memory_object_stream[Item](BUFFER)
                ctx = Context(engine, agent.budget, stats, trace, progress, scratch)
                tg.start_soon(_stage, agent, ctx, upstream, send)
                upstream = receive
            assert upstream is not None
            async with upstream:
                async for item in upstream:
                    await emit(item)
    except BaseExceptionGroup as group:
        raise first_failure(group) from None


def first_failure(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a task group: a stage's failure before anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    broken = anyio.BrokenResourceError  # a stage whose reader stopped: a consequence
    return next((e for e in leaves if isinstance(e, StageError)), None) or \
        next((e for e in leaves if not isinstance(e, broken)), leaves[0])


async def _stage(agent: Stage, ctx: Context, upstream: ObjectReceiveStream[Item] | None,
                 send: ObjectSendStream[Item]) -> None:
    started = time.perf_counter()
    stats = ctx.stats

    async def inputs() -> AsyncIterator[Item]:
        if upstream is None:
            return
        async with upstream:
            async for item in upstream:
                stats.items_in += 1
                yield item

    async def out(item: Item) -> None:
        stats.items_out += 1
        await send.send(item)

    try:
        async with send:
            if agent.kind == "source":
                async for item in cast(SourceStage, agent).produce(ctx):
                    await out(item)
            elif agent.kind == "map":
                await _map_stage(cast(MapStage, agent), ctx, inputs(), out)
            elif agent.kind == "reduce":
                async for item in cast(ReduceStage, agent).reduce(inputs(), ctx):
                    await out(item)
            else:
                raise TypeError(f"{type(agent).__name__} is not a source, map or reduce agent")
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        cause = first_failure(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(cause, anyio.BrokenResourceError):
            return  # the next stage stopped reading; it reports its own failure
        raise StageError(stats.index, stats.name, cause) from cause
    finally:
        stats.seconds = time.perf_counter() - started


async def _map_stage(agent: MapStage, ctx: Context, inputs: AsyncIterator[Item],
                     out: Callable[[Item], Awaitable[None]]) -> None:
    """agent.map over the stream, `agent.concurrency` items at once, output in input order."""
    window_send, window_receive = anyio.create_memory_object_stream[_Slot](agent.concurrency)
    limiter = anyio.CapacityLimiter(agent.concurrency)
    async with anyio.create_task_group() as tg:

        async def work(item: Item, slot: _Slot) -> None:
            async with limiter:
                slot.items = await agent.map(item, ctx)
            slot.done.set()

        async def feed() -> None:
            async with window_send:
                async for item in inputs:
                    slot = _Slot()
                    await window_send.send(slot)  # waits while the window is full
                    tg.start_soon(work, item, slot)

        tg.start_soon(feed)
        async with window_receive:
            async for slot in window_receive:
                await slot.done.wait()
                for item in slot.items:
                    await out(item)


@dataclass
class _Slot:
    done: anyio.Event = field(default_factory=anyio.Event)
    items: list[Item] = field(default_factory=list)
