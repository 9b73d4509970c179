"""staged-diff: what `git commit` would record, as one item."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import anyio

from mempipe.git import staged_diff
from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import SourceAgent


class StagedDiff(SourceAgent):
    """The staged changes of the git repository here (`git diff --staged -M`)."""

    name: ClassVar[str] = "staged-diff"

    async def produce(self, ctx: Context) -> AsyncIterator[Item]:
        text = await anyio.to_thread.run_sync(staged_diff)
        yield Item(text=text, source="git diff --staged", span=(0, len(text)))
