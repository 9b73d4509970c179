"""Several servers of one model as one engine (`--model URL1,URL2,...`): each request goes
to the live replica with the fewest outstanding requests; a replica that stops answering is
dropped, said once on stderr, and what was in flight there runs again on the others, so
no item is lost or answered twice."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mempipe.engine.base import Capability, Generation, GenerationRequest, Message
from mempipe.engine.http import HTTPEngine
from mempipe.engine.server import ServerGone
from mempipe.errors import MempipeError

T = TypeVar("T")
RETRIES = 1  # a replica retries a refused connection once before it counts as gone


@dataclass(eq=False)
class Replicas:
    """The engines behind `specs`, all serving one model."""

    specs: list[str]
    live: list[HTTPEngine] = field(init=False)

    def __post_init__(self) -> None:
        self.live = [HTTPEngine(spec, retries=RETRIES) for spec in self.specs]

    def _pick(self) -> HTTPEngine:
        if not self.live:
            raise ServerGone(",".join(self.specs), "every replica failed", 0)
        return min(self.live, key=lambda engine: engine.server.in_flight)

    def _drop(self, engine: HTTPEngine, gone: ServerGone) -> None:
        if engine in self.live:
            self.live.remove(engine)
            left = len(self.live)
            print(f"mempipe: warning: replica {gone}; going on with {left} other"
                  f"{'s' if left != 1 else ''}", file=sys.stderr)
        if not self.live:
            raise gone

    def _call(self, use: Callable[[HTTPEngine], T]) -> T:
        while True:
            engine = self._pick()
            try:
                return use(engine)
            except ServerGone as gone:
                self._drop(engine, gone)

    # -- the engine contract, each call on one replica --------------------------------
    @property
    def name(self) -> str:
        return self._call(lambda e: e.name)

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._call(lambda e: e.capabilities)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self._call(lambda e: e.count_tokens(texts))

    def prompt_tokens(self, messages: list[Message]) -> int:
        return self._call(lambda e: e.prompt_tokens(messages))

    def score(self, messages: list[Message], options: list[str],
              memories: list[Any] | None = None, adapter: Any = None) -> list[float]:
        return self._call(lambda e: e.score(messages, options, memories, adapter))

    def surprise(self, text: str) -> list[tuple[int, int, float]]:
        return self._call(lambda e: e.surprise(text))

    async def generate(self, request: GenerationRequest) -> Generation:
        while True:
            engine = self._pick()
            try:
                return await engine.generate(request)
            except ServerGone as gone:
                self._drop(engine, gone)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Pieces as they come; after a replica fails mid-stream the request runs again on
        another, and what was already sent is skipped where the new run repeats it (a
        greedy request does), else the failure is the stream's."""
        sent = ""
        while True:
            engine = self._pick()
            again = ""
            try:
                async for piece in engine.stream(request):
                    again += piece
                    if len(again) <= len(sent):
                        continue
                    if not again.startswith(sent):
                        raise MempipeError(f"{engine.url} wrote another reply when a "
                                           "failed stream ran again")
                    new, sent = again[len(sent):], again
                    yield new
                return
            except ServerGone as gone:
                self._drop(engine, gone)
                if sent and request.temperature > 0:
                    raise
