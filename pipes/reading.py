"""Reading a question against text without a model: what it asks for, which sentences
are evidence for it (never the book's headings), and whether a written answer says only
what that evidence says. A small model answers well when its context holds the evidence
and little else (DESIGN.md, Why small agents)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mempipe.memory.embed import Embedder
from mempipe.memory.query import STOPWORDS, fuse, words
from mempipe.pipes.chunking import sentence_spans
from mempipe.pipes.item import Item
from mempipe.pipes.relevance import bm25

# Words that say nothing of their own: an answer made only of these and the question's
# words answers nothing.
FUNCTION_WORDS = STOPWORDS | frozenset({
    "about", "after", "again", "all", "also", "am", "any", "been", "before", "being",
    "both", "can", "could", "did", "does", "doing", "down", "each", "even", "ever", "every",
    "few", "here", "herself", "himself", "how", "into", "itself", "just", "let", "may",
    "might", "more", "most", "much", "must", "myself", "never", "nor", "now", "off", "once",
    "one's", "only", "other", "out", "over", "own", "quite", "same", "shall", "should",
    "some", "such", "those", "through", "till", "under", "until", "up", "upon", "very",
    "what", "whatever", "while", "yes", "yet", "you'll", "i'm", "i'll", "it's", "don't",
    "one", "oh", "well", "say", "says", "thought", "replied", "cried", "went", "answered",
    "however", "indeed", "whether", "why", "though", "because", "since", "onto", "towards",
    "toward", "within", "without", "against", "among", "across", "along", "around",
    "behind", "beside", "between", "beyond", "near", "like", "dear", "sure", "thing",
    "things", "way", "something", "nothing", "anything", "everything", "ll", "s", "t",
    "d", "re", "ve", "m"})
# A sentence this close to the question (cosine of their embeddings) or closer may answer
# it; below, nothing recalled bears on it. Chosen on questions about the bundled books and
# questions about other things (bench/general.py reports both).
RELEVANT = 0.2
_CHAPTER = re.compile(r"^\s*(?:chapter|book|part|volume|section|canto|act|scene)\b"
                      r"[\s.]*(?:[ivxlcdm]+|\d+|[a-z]+)\b", re.IGNORECASE)

# What a question asks for, by the question word that says so.
_KINDS = [
    ("number", re.compile(r"\bhow\s+(?:many|much|far|long|tall|high|deep|old|large|big|"
                          r"wide|often|heavy)\b|\bwhat\s+(?:age|size|number|sum)\b", re.I)),
    ("time", re.compile(r"\bwhen\b|\bwhat\s+(?:time|date|day|year|month|hour|season)\b"
                        r"|\b(?:on|by|at|in)\s+what\s+(?:time|date|day|year|month|hour|feast"
                        r"|season)\b", re.I)),
    ("person", re.compile(r"\b(?:who|whom|whose)\b|\bwhich\s+(?:\w+\s+)?(?:character|person"
                          r"|people|man|woman|girl|boy|lady|gentleman|officer|friend|cousin"
                          r"|servant|relation|sister|brother|daughter|son)\b", re.I)),
    ("place", re.compile(r"\bwhere\b|\b(?:in|at|to|from)\s+which\s+\w+|\bwhat\s+(?:place|"
                         r"town|city|country|county|street|house|estate)\b", re.I)),
    ("reason", re.compile(r"\bwhy\b|\bwhat\s+for\b|\bfor\s+what\s+reason\b", re.I)),
    ("manner", re.compile(r"\bhow\b", re.I)),
]


def kind_of(question: str) -> str:
    """What the question asks for (number, time, person, place, reason, manner or thing):
    the first question word decides ("Where ... when ...?" asks for a place)."""
    found = [(m.start(), i) for i, (_, pattern) in enumerate(_KINDS)
             if (m := pattern.search(question))]
    return _KINDS[min(found)[1]][0] if found else "thing"


def is_structure(sentence: str) -> bool:
    """Whether a sentence is the book's structure rather than its content: a line of it
    a heading (all capitals, "Chapter IV", "BOOK 2"), or the sentence a title on a line
    of its own (a few capitalised words, no sentence punctuation), as tables of contents
    are. Such text is never evidence and never an answer."""
    lines = [" ".join(line.split()) for line in sentence.splitlines() if line.strip()]
    if not lines:
        return True
    if any(_heading(line) for line in lines):
        return True
    tokens = lines[0].split()
    return len(lines) == 1 and len(tokens) <= 8 and not re.search(r"[.!?,;:\"“”]", lines[0]) \
        and all(t[0].isupper() or not t[0].isalpha() or t.lower() in STOPWORDS for t in tokens) \
        and any(t[0].isupper() and t.lower() not in STOPWORDS for t in tokens)


def _heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    capitals = len(letters) >= 4 and sum(c.isupper() for c in letters) > 0.8 * len(letters)
    return capitals or bool(_CHAPTER.match(line))


@dataclass
class Evidence:
    """A sentence of a recalled passage and how well it bears on the question."""

    item: Item
    score: float


def evidence(question: str, contexts: list[Item], embedder: Embedder,
             limit: int = 3) -> list[Evidence]:
    """The sentences of `contexts` that bear most on `question`, best first: a BM25
    ranking and an embedding ranking, fused, of the sentences that are content (not
    headings) and at least RELEVANT to it by cosine similarity (`score`). None where
    nothing bears on it."""
    sentences: list[Item] = []
    seen: set[tuple[str, int]] = set()
    for context in contexts:
        for a, b in sentence_spans(context.text):
            part = context.part(a, b)
            key = (part.source or "", part.span[0] if part.span else a)
            if key not in seen and not is_structure(part.text):
                seen.add(key)
                sentences.append(part)
    if not sentences:
        return []
    texts = [" ".join(s.text.split()) for s in sentences]
    vectors = embedder.embed([question, *texts])
    cosine = vectors[1:] @ vectors[0]
    kept = [i for i in range(len(texts)) if cosine[i] >= RELEVANT]
    lexical = bm25(question, [texts[i] for i in kept])
    fused = fuse([[kept[j] for j in np.argsort(-np.asarray(lexical), kind="stable")],
                  sorted(kept, key=lambda i: -cosine[i])])
    order = sorted(fused, key=lambda i: -fused[i])[:limit]
    return [Evidence(sentences[i], float(cosine[i])) for i in order]


def grounded(answer: str, evidence: str, question: str) -> bool:
    """Whether a written answer says something, and only what its evidence says: it has
    words of its own beyond the question's (an echo answers nothing), and at least half
    of them occur in the evidence (the rest is invention). Stems are compared, so
    "hedgehogs" is grounded by "hedgehog"."""
    asked = {_stem(w) for w in words(question)}
    said = [_stem(w) for w in words(answer) if w not in FUNCTION_WORDS]
    own = [w for w in said if w not in asked]
    if not own:
        return False
    shown = {_stem(w) for w in words(evidence)}
    return sum(w in shown for w in own) * 2 >= len(own)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word
