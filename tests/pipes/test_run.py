"""The runner: concurrency bound, order, backpressure, cancellation, error naming."""

from collections.abc import AsyncIterator
from typing import ClassVar

import anyio
import pytest

from mempipe import Item, MapAgent, ReduceAgent, SourceAgent
from mempipe.errors import StageError
from mempipe.pipes.context import Context

events: list[str] = []


class Numbers(SourceAgent):
    name: ClassVar[str] = "numbers"
    count: int = 10

    async def produce(self, ctx: Context) -> AsyncIterator[Item]:
        for i in range(self.count):
            events.append(f"produce {i}")
            yield Item(text=str(i))


class Slow(MapAgent):
    name: ClassVar[str] = "slow"
    concurrency: ClassVar[int] = 3
    running: ClassVar[int] = 0
    peak: ClassVar[int] = 0
    fail_on: int = -1

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        type(self).running += 1
        type(self).peak = max(type(self).peak, type(self).running)
        # Later items finish first, so order has to be restored by the runner.
        await anyio.sleep(0.05 / (1 + int(item.text)))
        type(self).running -= 1
        if int(item.text) == self.fail_on:
            raise ValueError(f"cannot handle {item.text}")
        return [item.derived(f"<{item.text}>")]


class Collect(ReduceAgent):
    name: ClassVar[str] = "collect"

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        yield Item(text=",".join([i.text async for i in items]))


class Forever(MapAgent):
    name: ClassVar[str] = "forever"
    cancelled: ClassVar[bool] = False

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            type(self).cancelled = True
            raise
        return []


def test_map_runs_concurrently_within_its_bound_and_keeps_order(engine) -> None:
    Slow.peak = 0
    out = (Numbers() | Slow() | Collect()).run(engine=engine)
    assert out == ",".join(f"<{i}>" for i in range(10))
    assert Slow.peak == 3


def test_streams_are_bounded_so_sources_wait_for_consumers(engine) -> None:
    events.clear()

    async def consume() -> None:
        async for item in (Numbers(count=100) | Slow()).stream(engine=engine):
            events.append(f"consume {item.text}")
            await anyio.sleep(0.01)

    anyio.run(consume)
    first = events.index("consume <0>")
    produced_before = sum(1 for e in events[:first] if e.startswith("produce"))
    assert produced_before < 40  # not all 100: bounded buffers held the source back


def test_first_failing_stage_is_named_and_cancels_the_rest(engine) -> None:
    Forever.cancelled = False
    with pytest.raises(StageError) as error:
        (Numbers() | Slow(fail_on=4) | Forever()).run(engine=engine)
    assert str(error.value) == "stage 2 (slow): ValueError: cannot handle 4"
    assert Forever.cancelled


def test_stopping_a_stream_early_stops_the_stages(engine) -> None:
    async def first() -> str:
        async for item in (Numbers(count=1000) | Slow()).stream(engine=engine):
            return item.text
        return ""

    assert anyio.run(first) == "<0>"


def test_input_given_from_python_feeds_a_pipeline_without_source(engine) -> None:
    assert (Slow() | Collect()).run(["1", "2"], engine=engine) == "<1>,<2>"
