"""remember: keep what flows through in a memory namespace, and pass it on unchanged."""

from __future__ import annotations

from typing import ClassVar, Literal

import anyio
from pydantic import Field, field_validator

from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory import Memory, Segmenter
from mempipe.memory.kv import DEFAULT, Compression, engine_for_kv
from mempipe.memory.scratch import NAMESPACE as SCRATCH
from mempipe.memory.segment import PASSAGE_TOKENS
from mempipe.memory.store import check_namespace
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import MapAgent


class Remember(MapAgent):
    """Remember each item in a namespace (indexed once per content), passing it on."""

    name: ClassVar[str] = "remember"
    concurrency: ClassVar[int] = 1  # one writer per stage; the store orders the rest

    into: str = Field(default="default", description="the namespace to remember into")
    episodes: bool = Field(default=False,
                           description="cut passages where the model is surprised (EM-LLM)")
    gamma: float = Field(default=1.0, gt=0, description="episode boundary: mean + gamma*std")
    tokens: int = Field(default=PASSAGE_TOKENS, ge=8, le=256,
                        description="largest passage, in embedder tokens")
    tier: Literal["text", "kv"] = Field(
        default="text", description="kv: also store each passage's keys and values "
        "(tier 2), for ask --tier kv")
    kv: str = Field(default=DEFAULT.name,
                    description="how key/value memories are kept: fp16|int8|int4-"
                    "<N>of128-all|half (bits, tokens kept per 128, layers)")

    @field_validator("kv")
    @classmethod
    def _valid_setting(cls, value: str) -> str:
        try:
            return Compression.parse(value).name
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("into")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        if value == SCRATCH:
            raise ValueError("scratch is each run's own namespace; choose another name")
        return check_namespace(value)

    async def map(self, item: Item, ctx: Context) -> list[Item]:
        segmenter = Segmenter(tokens=self.tokens, gamma=self.gamma,
                              engine=ctx.engine if self.episodes else None)
        task = ctx.progress.task(f"remember {item.source}", None)
        try:
            # Abandoned on cancel: the store commits a whole document or nothing.
            await anyio.to_thread.run_sync(
                lambda: Memory(self.into).remember(item, segmenter=segmenter),
                abandon_on_cancel=True)
        finally:
            task.done()
        if self.tier == "kv":
            await self._encode(ctx)
        return [item]

    async def _encode(self, ctx: Context) -> None:
        """The namespace's passages that lack a key/value memory get one."""
        progress = ctx.progress.counted(f"remember: key/value memories of {self.into}")
        engine = engine_for_kv(ctx.engine)
        try:
            await anyio.to_thread.run_sync(lambda: Memory(self.into).encode_kv(
                engine, self.kv, progress), abandon_on_cancel=True)
        finally:
            progress.done()
