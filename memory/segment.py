"""How a text becomes passages: fixed sentence-aware chunks (the default), or events cut
where the model is surprised (EM-LLM episodes)."""

from __future__ import annotations

from dataclasses import dataclass

from mempipe.chunking import Counter, Span, chunk_spans
from mempipe.engine.base import Engine
from mempipe.memory.episodes import event_spans

PASSAGE_TOKENS = 96  # embedder word pieces: small passages retrieve precisely


@dataclass(frozen=True)
class Segmenter:
    """Cuts texts into passages of at most `tokens` tokens; with `engine`, at the model's
    surprise boundaries instead (see memory/episodes.py)."""

    tokens: int = PASSAGE_TOKENS
    engine: Engine | None = None  # set: episodes; None: fixed chunks
    gamma: float = 1.0

    def spans(self, text: str, count: Counter) -> list[Span]:
        if self.engine is None:
            return chunk_spans(text, self.tokens, count)
        return event_spans(text, self.engine, self.gamma, max_tokens=self.tokens)
