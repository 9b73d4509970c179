"""Reading a recall query: its words for BM25, its quoted phrases for exact matching, whether
it asks for someone, and reciprocal rank fusion of several rankings into one."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
_PHRASE = re.compile(r'"([^"]+)"|“([^”]+)”')
MAX_PHRASE_WORDS = 8
_ASKS_FOR_SOMEONE = re.compile(
    r"\b(?:who|whom|whose)\b|\bwhich\s+(?:character|person|people|man|woman|girl|boy|one)\b"
    r"|\bname\s+the\s+(?:character|person|speaker)\b", re.IGNORECASE)
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')  # what is quoted is not the question's own words
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


# Words in nearly every passage: they add almost nothing to BM25 and make SQLite score
# every passage (a 100K-passage namespace took 110 ms a query with them, see bench/memory).
STOPWORDS = frozenset({"a", "an", "and", "are", "as", "at", "be", "but", "by", "do", "for",
    "from", "had", "has", "have", "he", "her", "him", "his", "i", "if", "in", "is", "it", "its",
    "me", "my", "no", "not", "of", "on", "or", "our", "she", "so", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "too", "us", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would",
    "you", "your", "said"})


def fts_any(query: str) -> str | None:
    """An FTS5 expression matching any word of `query` but the commonest (None when it
    has no words)."""
    terms = dict.fromkeys(words(query))
    kept = [t for t in terms if t not in STOPWORDS] or list(terms)
    return " OR ".join(f'"{t}"' for t in kept) or None


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


def asks_for_someone(question: str) -> bool:
    """Whether the question asks for a person ("who ...", "tell me who ...", "which
    character ..."): its answer is a name."""
    return bool(_ASKS_FOR_SOMEONE.search(_QUOTED.sub(" ", question)))
