"""Episodic segmentation (EM-LLM): cut a text where the model is surprised.

A token t opens a new event when its surprise -log p(x_t | x_<t) exceeds the mean plus
gamma standard deviations of the surprise over the WINDOW tokens before it. Events are
kept between MIN_TOKENS and a maximum length: a boundary that would leave a shorter event
is skipped, an event that would grow longer is cut at its most surprising token."""

from __future__ import annotations

import statistics
from itertools import pairwise

from mempipe.chunking import Span
from mempipe.engine.base import Engine

WINDOW = 128
MIN_TOKENS = 8


def boundaries(surprise: list[float], gamma: float, min_tokens: int, max_tokens: int,
               window: int = WINDOW) -> list[int]:
    """Token indices where events start (the first is always 0)."""
    starts = [0]
    for t in range(1, len(surprise)):
        since = t - starts[-1]
        before = surprise[max(0, t - window):t]
        surprising = False
        if len(before) >= 2:
            threshold = statistics.fmean(before) + gamma * statistics.pstdev(before)
            surprising = surprise[t] > threshold
        if surprising and since >= min_tokens:
            starts.append(t)
        elif since >= max_tokens:
            # Too long without a surprise: cut at the most surprising token that leaves
            # both sides at least min_tokens long.
            low = starts[-1] + min_tokens
            cut = max(range(low, t + 1), key=lambda i: surprise[i]) if low <= t else t
            starts.append(cut)
    return starts


def event_spans(text: str, engine: Engine, gamma: float = 1.0,
                min_tokens: int = MIN_TOKENS, max_tokens: int = 128) -> list[Span]:
    """Character spans of `text`, end to end, one per event."""
    tokens = engine.surprise(text)
    if not tokens:
        return [(0, len(text))] if text else []
    starts = boundaries([s for _, _, s in tokens], gamma, min_tokens, max_tokens)
    cuts = [0] + [tokens[i][0] for i in starts[1:]] + [len(text)]
    return [(a, b) for a, b in pairwise(cuts) if b > a]
