"""Reading a recall query: its words for BM25, its quoted phrases for exact matching, and
reciprocal rank fusion of several rankings into one."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
_PHRASE = re.compile(r'"([^"]+)"|“([^”]+)”')
MAX_PHRASE_WORDS = 8
RRF_K = 60  # the constant of Cormack et al.: damps the weight of the very first ranks


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def phrases(query: str) -> list[str]:
    """The double-quoted phrases of `query` ("straight" or “curly”) with 2+ words."""
    found = [a or b for a, b in _PHRASE.findall(query)]
    return [p for p in found if len(words(p)) >= 2]


def exact(query: str) -> list[str]:
    """What a passage must hold word for word to rank first: the quoted phrases, or with
    none, a short query as a whole (`off with her head` finds the line itself)."""
    return phrases(query) or ([query] if 2 <= len(words(query)) <= MAX_PHRASE_WORDS else [])


def fts_any(query: str) -> str | None:
    """An FTS5 expression matching any word of `query` (None when it has no words)."""
    terms = dict.fromkeys(words(query))
    return " OR ".join(f'"{t}"' for t in terms) or None


def fts_phrase(phrase: str) -> str:
    """An FTS5 expression matching `phrase` word for word, punctuation ignored."""
    return '"' + " ".join(words(phrase)) + '"'


def fuse(rankings: Sequence[Sequence[int]]) -> dict[int, float]:
    """Reciprocal rank fusion: id -> sum over rankings of 1 / (RRF_K + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return scores
