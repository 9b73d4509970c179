"""How much a passage is read: what placement (memory/placement.py) promotes, and whose
facts an adapter (memory/params.py) learns first."""

from __future__ import annotations

import datetime as dt

from mempipe.memory import Memory, Passage

HALF_LIFE_DAYS = 7.0


def heat(passage: Passage, now: dt.datetime | None = None) -> float:
    """How much the passage is read: recalls, halved every HALF_LIFE_DAYS since the last."""
    if not passage.recalls or passage.last_recall is None:
        return 0.0
    now = now or dt.datetime.now(dt.UTC)
    days = (now - dt.datetime.fromisoformat(passage.last_recall)).total_seconds() / 86400
    return passage.recalls * 0.5 ** (max(0.0, days) / HALF_LIFE_DAYS)


def hot(memory: Memory) -> list[Passage]:
    """The namespace's recalled passages, hottest first."""
    now = dt.datetime.now(dt.UTC)
    warm = [(heat(p, now), p) for p in memory.passages() if p.recalls]
    return [p for _, p in sorted(warm, key=lambda pair: (-pair[0], pair[1].id))]
