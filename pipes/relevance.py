"""Ranking passages against a question by BM25 over words, in memory.

Used where input must be narrowed to fit a context and no memory tier is involved."""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+")
K1, B = 1.2, 0.75


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bm25(query: str, passages: list[str]) -> list[float]:
    """One BM25 score per passage (higher is more relevant)."""
    docs = [Counter(words(p)) for p in passages]
    if not docs:
        return []
    lengths = [sum(d.values()) for d in docs]
    average = sum(lengths) / len(docs) or 1.0
    scores = [0.0] * len(docs)
    for term in set(words(query)):
        having = sum(1 for d in docs if term in d)
        if not having:
            continue
        idf = math.log(1 + (len(docs) - having + 0.5) / (having + 0.5))
        for i, d in enumerate(docs):
            tf = d.get(term, 0)
            if tf:
                scores[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[i] / average))
    return scores
