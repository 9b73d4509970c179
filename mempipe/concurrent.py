"""Many awaits, a bounded number at once: a model batches what runs together, but a
thousand requests at once would only queue in memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

T = TypeVar("T")
R = TypeVar("R")


async def gather(fn: Callable[[T], Awaitable[R]], values: Sequence[T], limit: int,
                 on_done: Callable[[], None] = lambda: None) -> list[R]:
    """fn over values, at most `limit` running at once; results in input order."""
    results: list[R] = [None] * len(values)  # type: ignore[list-item]
    limiter = anyio.CapacityLimiter(limit)

    async def one(i: int, value: T) -> None:
        async with limiter:
            results[i] = await fn(value)
        on_done()

    async with anyio.create_task_group() as tg:
        for i, value in enumerate(values):
            tg.start_soon(one, i, value)
    return results
