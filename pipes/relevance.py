"""Ranking text against a question in memory: BM25 over passages, and `focus`, which
narrows a passage to the few sentences that bear on the question (a small model answers
far better from 150 characters than from 600)."""

from __future__ import annotations

import math
from collections import Counter

from mempipe.chunking import sentence_spans
from mempipe.item import Item
from mempipe.memory.query import phrases, words

K1, B = 1.2, 0.75
PHRASE_BONUS = 100.0  # above any BM25 score: a verbatim quotation decides


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


def focus(question: str, item: Item, chars: int) -> Item:
    """The sentences of `item` that bear most on `question`: the best one (by BM25, and
    first of all one holding a quoted phrase of the question word for word), grown by its
    neighbours while the whole stays within `chars` characters. `score` says how well it
    matched, so windows from several passages can be ranked."""
    spans = sentence_spans(item.text)
    if not spans:
        return item.model_copy(update={"score": 0.0})
    sentences = [item.text[a:b] for a, b in spans]
    scores = bm25(question, sentences)
    for phrase in phrases(question):
        wanted = " ".join(words(phrase))
        for i, sentence in enumerate(sentences):
            said = " ".join(words(sentence))
            # the phrase inside the sentence, or a long sentence inside the phrase (a
            # quotation that runs over several sentences)
            if wanted in said or (len(said) >= 24 and said in wanted):
                scores[i] += PHRASE_BONUS
    best = max(range(len(sentences)), key=lambda i: scores[i])
    return widened(item, spans, best, chars).model_copy(update={"score": scores[best]})


def widened(item: Item, spans: list[tuple[int, int]], best: int, chars: int,
            skip: frozenset[int] = frozenset()) -> Item:
    """The part of `item` that is sentence `best` of its `spans`, grown by neighbouring
    sentences (never across one in `skip`) while the whole stays within `chars`
    characters (what follows first: it often completes a match), trailing space left
    out."""
    low = high = best
    size = spans[best][1] - spans[best][0]
    grew = True
    while grew:
        grew = False
        for j in (high + 1, low - 1):
            if 0 <= j < len(spans) and j not in skip \
                    and size + spans[j][1] - spans[j][0] <= chars:
                size += spans[j][1] - spans[j][0]
                low, high = min(low, j), max(high, j)
                grew = True
    start, end = spans[low][0], spans[high][1]
    while end > start and item.text[end - 1].isspace():
        end -= 1
    return item.part(start, end)
