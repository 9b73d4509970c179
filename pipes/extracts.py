"""The sentences that stand for a text, without a model: the text cut into consecutive
parts, and from each the few sentences nearest its centre (by sentence embedding) that
name the text's most mentioned people. What `summarize` has the model retell, and what it
falls back on."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from mempipe.chunking import sentence_spans
from mempipe.item import Item
from mempipe.memory.embed import Embedder
from mempipe.memory.query import words
from mempipe.pipes.answers import FUNCTION_WORDS, names
from mempipe.pipes.reading import is_structure

SENTENCES = 4        # extracted from each part: what the model retells in one sentence
MIN_WORDS = 4        # a shorter sentence ("Oh dear!") stands for nothing
RETOLD_WORDS = 6     # a shorter retelling ("Elizabeth, Jane, and Charlotte.") tells nothing
PART_SENTENCES = 3   # a part holds at least this many sentences
MAIN_NAMES = 5       # the text's most mentioned names; a sentence naming them is preferred
NAME_WEIGHT = 0.1    # cosine similarity a main name is worth (about a fifth of the spread)
GROUNDED = 0.75      # of a retold sentence's words that say something, in its extract
QUOTE_WEIGHT = 0.1   # a sentence all in quotation marks tells less of what happens
_QUOTED = re.compile(r"“[^”]*”?|\"[^\"]*\"?")
_ENDED = re.compile(r"[.!?][\"'”’)\]]*$")  # not cut off at a colon
SHORT = 1.5          # the fallback sentence is at most this many times a summary sentence


@dataclass(frozen=True)
class Extract:
    """One part's extract: its index, its chosen sentences in order, and the one that
    best stands for it on its own."""

    index: int
    text: str
    best: str


def extract(items: list[Item], parts: int, embedder: Embedder,
            count_tokens: Callable[[list[str]], list[int]], room: int,
            best_words: int = 22) -> list[Extract]:
    """At most `parts` extracts of `items`, in order, each within `room` tokens; none
    where the items hold no sentence of content (only headings, or nothing)."""
    sentences = [" ".join(item.text[a:b].split()) for item in items
                 for a, b in sentence_spans(item.text) if not is_structure(item.text[a:b])]
    sentences = [s for s in sentences if len(s.split()) >= MIN_WORDS]
    if not sentences:
        return []
    main = [words(n) for n in names(" ".join(sentences), "")[:MAIN_NAMES]]
    vectors = embedder.embed(sentences)
    sizes = count_tokens(sentences)
    found: list[Extract] = []
    named: set[str] = set()  # main names the parts so far stand on
    for index, members in enumerate(_parts(sentences, parts)):
        centre = vectors[members].mean(axis=0)
        score = {i: float(vectors[i] @ centre)
                 + NAME_WEIGHT * _naming(sentences[i], main, named)
                 - QUOTE_WEIGHT * _quoted(sentences[i]) for i in members}
        ranked = sorted(members, key=lambda i: -score[i])
        chosen, used = [], 0
        for i in ranked:
            if used + sizes[i] <= room:
                chosen.append(i)
                used += sizes[i]
            if len(chosen) == SENTENCES:
                break
        if not chosen:  # every sentence of the part is longer than the room
            continue
        ended = [i for i in ranked if len(sentences[i].split()) <= SHORT * best_words
                 and _ENDED.search(sentences[i])]
        best = sentences[(ended or chosen)[0]]
        named |= {n for n in map(" ".join, main) if set(n.split()) <= set(words(best))}
        found.append(Extract(index, " ".join(sentences[i] for i in sorted(chosen)), best))
    return found


def _parts(sentences: list[str], parts: int) -> list[list[int]]:
    """Sentence indices cut into at most `parts` consecutive runs of about equal length in
    characters, each of PART_SENTENCES or more."""
    parts = max(1, min(parts, len(sentences) // PART_SENTENCES))
    ends = np.cumsum([len(s) for s in sentences])
    bounds = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts, side="right")
    cuts = [0, *sorted(set(int(b) for b in bounds)), len(sentences)]
    return [list(range(a, b)) for a, b in pairwise(cuts) if b > a]


def _quoted(sentence: str) -> float:
    """The share of the sentence inside quotation marks: speech, not narration."""
    return sum(len(m) for m in _QUOTED.findall(sentence)) / len(sentence)


def _naming(sentence: str, main: list[list[str]], named: set[str]) -> float:
    """Main names the sentence holds, one not yet named counting twice."""
    said = set(words(sentence))
    return sum(1 + (" ".join(name) not in named) for name in main if set(name) <= said)


def first_sentence(text: str) -> str:
    """The first whole sentence of `text` ("" where it has none: a cut-off reply)."""
    text = " ".join(text.split())
    spans = sentence_spans(text)
    first = text[spans[0][0]:spans[0][1]].strip() if spans else ""
    return first if first[-1:] in ".!?" or first[-2:-1] in ".!?" else ""


def repeats_itself(sentence: str) -> bool:
    """Whether a run of three words occurs twice in the sentence ("the King is looking at
    Alice, and the King is looking at the King"): a small model's loop in small."""
    said = words(sentence)
    runs = [tuple(said[i:i + 3]) for i in range(len(said) - 2)]
    return len(runs) != len(set(runs))


def named_in(name: str, text: str) -> bool:
    """Whether every word of `name` that says something occurs in `text`."""
    shown = set(words(text))
    return all(w in shown or w in FUNCTION_WORDS for w in words(name))
