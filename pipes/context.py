"""What a running agent can reach: the shared engine, its budget, chunking and progress."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from mempipe.chunking import chunk_spans
from mempipe.concurrent import gather
from mempipe.engine.base import Engine, Generation, GenerationRequest, Message, best
from mempipe.errors import BudgetExceeded
from mempipe.item import Item
from mempipe.memory.scratch import Scratch
from mempipe.pipes.trace import Call, StageStats, Trace
from mempipe.progress import Progress, Task

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Context:
    """Handed to one stage's agent; every model call goes through `generate` so that the
    stage's budget is enforced and its tokens are counted."""

    engine: Engine
    budget: int  # the agent's context budget: prompt and output together
    stats: StageStats
    trace: Trace
    progress: Progress
    scratch: Scratch = field(default_factory=Scratch)  # shared by every stage of a run

    def warn(self, message: str) -> None:
        """A warning on stderr; stdout belongs to the pipe."""
        print(f"mempipe: warning: {self.stats.name}: {message}", file=sys.stderr)

    def note(self, text: str) -> None:
        """Something this stage chose (which memory tier answered...), shown by --trace."""
        self.stats.notes.append(text)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.engine.count_tokens(texts)

    def room(self, max_tokens: int, frame: str, system: str | None = None) -> int:
        """Tokens left for input text in a prompt made of `frame` (the prompt with its
        text left empty) and `system`, after `max_tokens` of output."""
        return self.budget - max_tokens - self.engine.prompt_tokens(_messages(frame, system)) - 4

    def chunks(self, item: Item, max_tokens: int, overlap: int = 0) -> list[Item]:
        """`item` cut into sentence-respecting pieces of at most `max_tokens` tokens, each
        with its index in `meta["chunk"]`."""
        spans = chunk_spans(item.text, max_tokens, self.count_tokens, overlap)
        return [item.part(a, b, chunk=i) for i, (a, b) in enumerate(spans)]

    async def generate(self, prompt: str, **options: Any) -> str:
        """The model's reply to `prompt`: the text of `complete`."""
        return (await self.complete(prompt, **options)).text

    async def complete(self, prompt: str, *, system: str | None = None, max_tokens: int = 256,
                       temperature: float = 0.0, stop: Sequence[str] = (),
                       window: int | None = None, memories: Sequence[Any] = (),
                       adapter: Any = None, begun: str = "") -> Generation:
        """The model's reply to `prompt`, within this agent's budget (refused if over).
        With `window`, a prompt of any length is read with Λ-shaped attention, its
        progress shown; `memories` (tier 2) go where the prompt holds `MEMORIES`; the
        model reads with `adapter` (a LoRA adapter) when given; `begun` is the start of
        a reply, which the model continues."""
        progress = self.progress.counted(f"{self.stats.name}: reading")
        messages = _messages(prompt, system)
        if begun:
            messages.append(Message(role="assistant", content=begun))
        request = GenerationRequest(messages=messages, max_tokens=max_tokens,
                                    temperature=temperature, stop=list(stop),
                                    budget=self.budget, agent=self.stats.name, window=window,
                                    progress=progress if window is not None else None,
                                    memories=list(memories), adapter=adapter)
        try:
            result = await self.engine.generate(request)
        finally:
            progress.done()
        self.stats.calls += 1
        self.stats.tokens_in += result.prompt_tokens
        self.stats.tokens_out += result.completion_tokens
        self.trace.calls.append(Call(stage=self.stats.index, agent=self.stats.name,
                                     prompt=prompt if system is None else f"{system}\n\n{prompt}",
                                     output=result.text, tokens_in=result.prompt_tokens,
                                     tokens_out=result.completion_tokens,
                                     seconds=result.seconds))
        return result

    async def choose(self, prompt: str, options: list[str], *, system: str | None = None,
                     memories: Sequence[Any] = (), adapter: Any = None) -> tuple[str, float]:
        """The option the model would most likely reply to `prompt`, and its mean token
        log-probability ("" and -inf with no options), within this agent's budget;
        `memories` and `adapter` as for `generate`. An engine that gives no
        log-probabilities writes instead: the option it wrote (score 0), else what it
        wrote (score -inf: not one of the options)."""
        if options and "scoring" not in self.engine.capabilities:
            return await self._write_instead(prompt, options, system)
        messages = _messages(prompt, system)
        longest = max(self.count_tokens(options), default=0)
        held = sum(int(m.keys[0].shape[1]) for m in memories)  # the cache slots they take
        needed = self.engine.prompt_tokens(messages) + held + longest
        if needed > self.budget:
            raise BudgetExceeded(f"{self.stats.name}: prompt and options take {needed} "
                                 f"tokens, over its budget of {self.budget}")
        scores = await anyio.to_thread.run_sync(self.engine.score, messages, options,
                                                list(memories), adapter)
        self.stats.calls += 1
        self.stats.tokens_in += needed
        chosen, score = best(options, scores)
        self.trace.calls.append(Call(stage=self.stats.index, agent=self.stats.name,
                                     prompt=prompt, output=f"chose {chosen!r} of {options}",
                                     tokens_in=needed, tokens_out=0, seconds=0.0))
        return chosen, score

    async def _write_instead(self, prompt: str, options: list[str], system: str | None
                             ) -> tuple[str, float]:
        longest = max(self.count_tokens(options))
        written = await self.generate(prompt, system=system, max_tokens=longest + 8)
        self.note("the engine gives no log-probabilities: wrote instead of choosing")
        said = written.casefold()
        found = [o for o in options if o.casefold() in said]
        return (max(found, key=len), 0.0) if found else (written, -math.inf)

    async def map(self, fn: Callable[[T], Awaitable[R]], values: Sequence[T],
                  description: str | None = None, limit: int = 8) -> list[R]:
        """fn over values concurrently (at most `limit` at once), results in input order."""
        task: Task = self.progress.task(description or self.stats.name, len(values))
        try:
            return await gather(fn, values, limit, on_done=task.advance)
        finally:
            task.done()


def _messages(prompt: str, system: str | None) -> list[Message]:
    messages = [Message(role="user", content=prompt)]
    if system is not None:
        messages.insert(0, Message(role="system", content=system))
    return messages
