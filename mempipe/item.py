"""The Item: what flows between stages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Item(BaseModel):
    """A piece of text with where it came from: `source` (path, `-` for stdin) and `span`,
    the [start, end) character offsets of `text` in that source."""

    text: str
    source: str = "-"
    span: tuple[int, int] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None

    def __str__(self) -> str:
        return self.text

    def part(self, start: int, end: int, **meta: Any) -> Item:
        """The sub-item text[start:end], its span mapped back into the source."""
        base = self.span[0] if self.span else 0
        known = self.span is not None
        return Item(
            text=self.text[start:end],
            source=self.source,
            span=(base + start, base + end) if known else None,
            meta={**self.meta, **meta},
        )

    @classmethod
    def combined(cls, text: str, parts: list[Item], **meta: Any) -> Item:
        """A new item made from several (a summary of them all), citing what it came from:
        one source keeps its covering span, several are listed in `meta["sources"]`."""
        sources = list(dict.fromkeys(p.source for p in parts))
        if len(sources) == 1 and all(p.span for p in parts):
            span = (min(p.span[0] for p in parts), max(p.span[1] for p in parts))  # type: ignore[index]
            return cls(text=text, source=sources[0], span=span, meta=meta)
        return cls(text=text, source=",".join(sources), meta={**meta, "sources": sources})

    def derived(self, text: str, **meta: Any) -> Item:
        """A new item made from this one (a summary, an answer): same source and span."""
        return Item(text=text, source=self.source, span=self.span, meta={**self.meta, **meta})
