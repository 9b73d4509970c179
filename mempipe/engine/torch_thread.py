"""Every torch computation in a mempipe process runs on one thread.

Each thread that runs torch on a CPU gets its own OpenMP pool; once the pools hold more
threads than there are cores, OpenMP stops spinning between operations, and a small
model's decoding step (hundreds of small operations) slowed by a third on 2 cores
(measured: 51 -> 35 tokens/s, the same loop run on one thread and then beside a second).
One thread also keeps CUDA work on one stream of submissions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
NAME = "mempipe-torch"
_executor = ThreadPoolExecutor(1, thread_name_prefix=NAME)


def on_torch_thread() -> bool:
    return threading.current_thread().name.startswith(NAME)


def run(fn: Callable[..., T], *args: object) -> T:
    """fn(*args) on the torch thread, waiting for it."""
    if on_torch_thread():
        return fn(*args)
    return _executor.submit(fn, *args).result()


async def run_async(fn: Callable[..., T], *args: object) -> T:
    """fn(*args) on the torch thread, without blocking the event loop. A caller cancelled
    meanwhile leaves it to finish: torch cannot be stopped half-way through an operation."""
    return await asyncio.get_running_loop().run_in_executor(_executor, fn, *args)
