"""Tidying what a small model writes: cut where it starts to loop, and keep to a length."""

from __future__ import annotations

import re

from mempipe.chunking import sentence_spans

LOOP_WORDS = 8  # a run of this many words seen before means the model is repeating itself
_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)\]]*\s*$")


def cut_loop(text: str) -> str:
    """`text` up to where it first repeats a run of LOOP_WORDS words (at the last complete
    sentence before that point, if there is one)."""
    words = list(re.finditer(r"\S+", text))
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - LOOP_WORDS + 1):
        run = tuple(w.group().lower().strip(".,;:!?\"'") for w in words[i : i + LOOP_WORDS])
        if run in seen:
            return _to_sentence_end(text[: words[i].start()])
        seen.add(run)
    return text.strip()


def trim_words(text: str, limit: int) -> str:
    """`text` cut to at most `limit` words, at the last sentence end that fits if one does."""
    found = list(re.finditer(r"\S+", text))
    if len(found) <= limit:
        return text.strip()
    return _to_sentence_end(text[: found[limit - 1].end()])


def _to_sentence_end(text: str) -> str:
    ends = [b for _, b in sentence_spans(text) if _ENDS_SENTENCE.search(text[:b])]
    return (text[: ends[-1]] if ends else text).strip()
