"""Cutting text into pieces that fit a token budget, on sentence boundaries where possible.

Every agent that meets input too long for its context calls this, so none truncates."""

from __future__ import annotations

import re
from collections.abc import Callable

Counter = Callable[[list[str]], list[int]]  # tokens in each text
Span = tuple[int, int]

# A sentence ends after . ! ? (and any closing quotes or brackets) before whitespace and
# a word that does not start in lower case (`“Stop!” said Alice` is one sentence), or at a
# blank line.
_SENTENCE_END = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?![a-z])|\n\s*\n\s*""")
_WORD = re.compile(r"\S+\s*|\s+")
# Titles before a name. The abbreviated ones end in a full stop that does not end the
# sentence ("Mr. Darcy"), as a few other abbreviations' do.
ABBREVIATED_TITLES = r"(?:Mr|Mrs|Ms|Dr|St|Messrs|Sr|Jr|Prof|Rev|Col|Gen|Capt|Lt)"
TITLES = (r"(?:Mr|Mrs|Ms|Dr|St|Messrs|Sr|Jr|Prof|Rev|Col|Gen|Capt|Lt|Miss|Lady|Lord|Sir"
          r"|Madam|Colonel|Captain|General|King|Queen|Prince|Princess)")
_ABBREVIATION = re.compile(rf"\b(?:{ABBREVIATED_TITLES}|Mt|vs|etc|e\.g|i\.e)\.$")


def sentence_spans(text: str) -> list[Span]:
    """Spans covering `text` end to end, one per sentence (with its trailing space)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if (text.count("\n", match.start(), match.end()) < 2
                and _ABBREVIATION.search(text, max(0, match.start() - 5), match.start())):
            continue
        if match.end() > start:
            spans.append((start, match.end()))
            start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def chunk_spans(text: str, max_tokens: int, count: Counter, overlap: int = 0) -> list[Span]:
    """Spans of `text`, each at most `max_tokens` tokens, cut between sentences (between
    words inside an over-long sentence); consecutive chunks share up to `overlap` tokens."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not text.strip():
        return []
    pieces = _pieces(text, sentence_spans(text), max_tokens, count)
    sizes = count([text[a:b] for a, b in pieces])
    chunks: list[Span] = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and (j == i or total + sizes[j] <= max_tokens):
            total += sizes[j]
            j += 1
        chunks.append((pieces[i][0], pieces[j - 1][1]))
        if j >= len(pieces):
            break
        # Step back over trailing pieces for the overlap, but always move forward.
        back, shared = j, 0
        while overlap and back - 1 > i and shared + sizes[back - 1] <= overlap:
            back -= 1
            shared += sizes[back]
        i = back
    # Token counts of joined pieces can differ from their sum by a few; recheck.
    checked: list[Span] = []
    for (a, b), n in zip(chunks, count([text[a:b] for a, b in chunks])):
        if n <= max_tokens or b - a <= 1:
            checked.append((a, b))
        else:
            inner = chunk_spans(text[a:b], max(1, max_tokens * 9 // 10), count, 0)
            checked.extend((a + x, a + y) for x, y in inner)
    return checked


def _pieces(text: str, spans: list[Span], max_tokens: int, count: Counter) -> list[Span]:
    """Sentences, with any sentence over `max_tokens` split into words, and any word over
    it into runs of characters."""
    out: list[Span] = []
    for (a, b), n in zip(spans, count([text[a:b] for a, b in spans])):
        if n <= max_tokens:
            out.append((a, b))
            continue
        words = [m.span() for m in _WORD.finditer(text, a, b)]
        for (s, e), size in zip(words, count([text[s:e] for s, e in words])):
            if size <= max_tokens:
                out.append((s, e))
            else:  # a run of characters with no space: cut it where tokens allow
                step = max(1, (e - s) * max_tokens // size // 2)
                out.extend((k, min(k + step, e)) for k in range(s, e, step))
    return out

