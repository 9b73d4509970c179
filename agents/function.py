"""`@agent`: an async function of one item becomes a map agent, usable in the DSL by name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import Field, create_model

from mempipe.config import DEFAULT_BUDGET
from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import BUDGET_HELP, MapAgent
from mempipe.pipes.registry import register

ItemFunction = Callable[..., Awaitable[Any]]


class FunctionAgent(MapAgent):
    """A map agent whose work is a user's function: `fn(item)` or `fn(item, ctx)` returning
    a string, an Item, a list of them, or None to drop the item."""

    fn: ClassVar[ItemFunction]
    wants_context: ClassVar[bool]

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        fn = type(self).fn
        result = await (fn(item, ctx) if self.wants_context else fn(item))
        if result is None:
            return []
        results = result if isinstance(result, list) else [result]
        return [r if isinstance(r, Item) else item.derived(str(r)) for r in results]


def agent(fn: ItemFunction | None = None, *, name: str | None = None,
          budget: int = DEFAULT_BUDGET, concurrency: int = 8) -> Any:
    """Decorate `async def shout(item)` (or `(item, ctx)`, to call the model through
    `ctx.generate`) to get an agent class named `shout`; `shout()` is a pipeline stage."""

    def wrap(fn: ItemFunction) -> type[FunctionAgent]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@agent needs an async function, got {fn!r}")
        cls = create_model(fn.__name__, __base__=FunctionAgent, __doc__=fn.__doc__,
                           budget=(int, Field(default=budget, ge=64, description=BUDGET_HELP)))
        cls.name = name or fn.__name__.replace("_", "-")
        cls.fn = staticmethod(fn)  # type: ignore[assignment]
        cls.wants_context = len(inspect.signature(fn).parameters) > 1
        cls.concurrency = concurrency
        register(cls)
        return cls

    return wrap(fn) if fn is not None else wrap
