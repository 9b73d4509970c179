"""Reading a question against text without a model: what it asks for, which sentences
are evidence for it (never the book's headings), and whether a written answer says only
what that evidence says. A small model answers well when its context holds the evidence
and little else (docs/benchmarks.md: the gold evidence against recalled passages)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from mempipe.chunking import ABBREVIATED_TITLES, sentence_spans
from mempipe.item import Item
from mempipe.memory.embed import Embedder
from mempipe.memory.query import STOPWORDS, fuse, words
from mempipe.pipes.answers import FUNCTION_WORDS, TITLED
from mempipe.pipes.relevance import bm25, widened

_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve "
                 "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty "
                 "thirty forty fifty sixty seventy eighty ninety hundred thousand half dozen")
_NUMBERS = dict(zip([*map(str, range(21)), *map(str, range(30, 100, 10)), "100", "1000"],
                    _NUMBER_WORDS.split()[:-2], strict=True))  # "12" is grounded by "twelve"
# Number words that count ("one" is as often a pronoun: "when one eats").
_COUNTS = frozenset(_NUMBER_WORDS.split()) - {"one"}
_PLACE_WORDS = frozenset({
    "in", "on", "at", "under", "into", "onto", "to", "from", "near", "by", "over", "behind",
    "inside", "beside", "across", "through", "down", "up", "towards", "toward", "beneath",
    "below", "above", "within", "upon", "outside", "around", "along", "between"})
_DETERMINERS = frozenset({"the", "a", "an", "her", "his", "their", "its", "my", "your", "our",
                          "this", "that", "some"})
SPAN_WORDS = 4  # an answer chosen from the text is a few words
MAX_SPANS = 64  # scored in one batch, the first in the text first
# Below this geometric mean probability of its tokens, a span the model chose is not
# given (an abstention). Chosen on the bundled general sets (bench/general.py): the
# model's sureness barely tells right from wrong, so only the least sure are held back.
SURE = 0.05
_CLAUSE = re.compile(r"[^,;:.!?()\[\]\"“”‘—–_*]+")  # a chosen answer never crosses punctuation
_TOKEN = re.compile(r"[A-Za-z0-9][\w'’\x00-]*")
_TITLE_STOP = re.compile(rf"\b({ABBREVIATED_TITLES})\.")  # "Mr. Darcy" is one name
_TIMES = frozenset({
    "clock", "morning", "evening", "night", "noon", "midnight", "afternoon", "day", "days",
    "week", "weeks", "month", "months", "year", "years", "yesterday", "today", "tomorrow",
    "ago", "spring", "summer", "autumn", "winter", "monday", "tuesday", "wednesday",
    "thursday", "friday", "saturday", "sunday", "january", "february", "march", "april",
    "may", "june", "july", "august", "september", "october", "november", "december",
    "hour", "hours", "minute", "minutes", "dawn", "dusk", "tea", "dinner", "breakfast",
    "supper", "last", "next", "first"})
# A sentence this close to the question (cosine of their embeddings) or closer may answer
# it; below, nothing recalled bears on it. Set by hand, not by a benchmark: sentences that
# share no subject with a question score about 0.2 and under with the embedder here.
RELEVANT = 0.2
_CHAPTER = re.compile(r"^\s*(?:chapter|book|part|volume|section|canto|act|scene)\b"
                      r"[\s.]*(?:[ivxlcdm]+|\d+|[a-z]+)\b", re.IGNORECASE)

_QUESTION_WORD = re.compile(r"\b(?:who|whom|whose|what|which|where|when|why|how)\b", re.I)
# What a question asks for, by the question word that says so.
_KINDS = [
    ("number", re.compile(r"\bhow\s+(?:many|much|far|long|tall|high|deep|old|large|big|"
                          r"wide|often|heavy)\b|\b(?:what|which)\s+(?:age|size|number|sum)\b",
                          re.I)),
    ("time", re.compile(r"\bwhen\b|\b(?:what|which)\s+(?:time|date|day|year|month|hour|"
                        r"season)\b"
                        r"|\b(?:on|by|at|in)\s+what\s+(?:time|date|day|year|month|hour|feast"
                        r"|season)\b", re.I)),
    ("person", re.compile(r"\b(?:who|whom|whose)\b|\bwhich\s+(?:\w+\s+)?(?:character|person"
                          r"|people|man|woman|girl|boy|lady|gentleman|officer|friend|cousin"
                          r"|servant|relation|sister|brother|daughter|son)\b", re.I)),
    ("place", re.compile(r"\bwhere\b|\b(?:in|at|to|from)\s+which\s+\w+|\b(?:what|which)\s+"
                         r"(?:place|town|city|country|county|street|house|estate)\b", re.I)),
    ("reason", re.compile(r"\bwhy\b|\bwhat\s+for\b|\b(?:for\s+)?(?:what|which)\s+reason\b",
                          re.I)),
    ("manner", re.compile(r"\bhow\b|\b(?:what|which)\s+way\b", re.I)),
]


def kind_of(question: str) -> str:
    """What the question asks for (number, time, person, place, reason, manner or thing):
    the first question word decides ("Where ... when ...?" asks for a place)."""
    found = [(m.start(), i) for i, (_, pattern) in enumerate(_KINDS)
             if (m := pattern.search(question))]
    first = _QUESTION_WORD.search(question)
    if not found or (first and min(found)[0] > first.start()):
        return "thing"  # "Which bird ... when ...?": the first question word asks no kind
    return _KINDS[min(found)[1]][0]


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
    return len(lines) == 1 and len(tokens) <= 8 \
        and not re.search(r"[,;:\"“”]|[.!?].", lines[0]) \
        and all(t[0].isupper() or not t[0].isalpha() or t.lower() in STOPWORDS for t in tokens) \
        and any(t[0].isupper() and t.lower() not in STOPWORDS for t in tokens)


def _heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    capitals = len(letters) >= 4 and sum(c.isupper() for c in letters) > 0.8 * len(letters)
    return capitals or bool(_CHAPTER.match(line))


def evidence(question: str, contexts: list[Item], embedder: Embedder, limit: int = 3,
             chars: int = 300, known: Mapping[tuple[str, int, int], np.ndarray] | None = None
             ) -> list[Item]:
    """The sentences of `contexts` that bear most on `question`, best first, each grown
    by its neighbours to about `chars` characters (a line of dialogue alone says little):
    a BM25 ranking and an embedding ranking, fused, of the sentences that are content
    (not headings) and at least RELEVANT to it by cosine similarity. None where
    nothing bears on it; a sentence inside an earlier one's window adds nothing.
    `known` holds vectors already computed, by (source, start, end): only the other
    sentences are embedded."""
    sentences: list[tuple[Item, list[tuple[int, int]], int, frozenset[int]]] = []
    for context in contexts:
        spans = sentence_spans(context.text)
        structure = frozenset(i for i, (a, b) in enumerate(spans)
                              if is_structure(context.text[a:b]))
        sentences += [(context, spans, i, structure) for i in range(len(spans))
                      if i not in structure]
    if not sentences:
        return []
    texts = [" ".join(c.text[s[i][0]:s[i][1]].split()) for c, s, i, _ in sentences]
    cosine = _similarity(question, texts, [_key(c, s[i]) for c, s, i, _ in sentences],
                         embedder, known or {})
    kept = [i for i in range(len(texts)) if cosine[i] >= RELEVANT]
    lexical = bm25(question, [texts[i] for i in kept])
    fused = fuse([[kept[j] for j in np.argsort(-np.asarray(lexical), kind="stable")],
                  sorted(kept, key=lambda i: -cosine[i])])
    found: list[Item] = []
    for i in sorted(fused, key=lambda i: -fused[i]):
        context, spans, n, structure = sentences[i]
        window = widened(context, spans, n, chars, structure)
        if not any(_inside(window, e) or _inside(e, window) for e in found):
            found.append(window)
        if len(found) == limit:
            break
    return found


def _key(context: Item, span: tuple[int, int]) -> tuple[str, int, int] | None:
    """A sentence's place in its source, as stored vectors are keyed."""
    if context.span is None:
        return None
    return context.source, context.span[0] + span[0], context.span[0] + span[1]


def _similarity(question: str, texts: list[str], keys: list[tuple[str, int, int] | None],
                embedder: Embedder, known: Mapping[tuple[str, int, int], np.ndarray]
                ) -> np.ndarray:
    """Cosine similarity of each text to the question, known vectors taken as they are."""
    missing = [i for i, key in enumerate(keys) if key not in known]
    embedded = embedder.embed([question, *(texts[i] for i in missing)])
    vectors = np.zeros((len(texts), embedded.shape[1]), dtype=np.float32)
    vectors[missing] = embedded[1:]
    for i, key in enumerate(keys):
        if key in known:
            vectors[i] = known[key]  # type: ignore[index]
    return vectors @ embedded[0]


def _inside(part: Item, whole: Item) -> bool:
    return part.source == whole.source and part.span is not None and whole.span is not None \
        and whole.span[0] <= part.span[0] and part.span[1] <= whole.span[1]


def spans(text: str, question: str) -> list[str]:
    """The short spans of `text` a question could be answered by, in the text's order:
    runs of 1 to SPAN_WORDS words within a clause, neither beginning nor ending with a
    function word, not made only of the question's own words. For a number or a time,
    only those that hold one; for a place, those a place preposition governs; for a
    person, the capitalised ones where any are. A titled name ("Mr. Darcy") is no place,
    reason or manner. None where none fits: nothing to choose is an abstention."""
    asked = set(words(question))
    found: dict[str, None] = {}
    placed: dict[str, None] = {}  # spans a place preposition governs: "on (the) bank"
    for clause in _CLAUSE.findall(_TITLE_STOP.sub("\\1\x00", " ".join(text.split()))):
        tokens = [t.replace("\x00", ".") for t in _TOKEN.findall(clause)]
        for n in range(1, SPAN_WORDS + 1):
            for i in range(len(tokens) - n + 1):
                run = tokens[i:i + n]
                first, last = run[0].lower(), run[-1].lower()
                if first in FUNCTION_WORDS or last in FUNCTION_WORDS or last.endswith("."):
                    continue
                if not set(words(" ".join(run))) <= asked | FUNCTION_WORDS:
                    found[" ".join(run)] = None
                    if _after_place_word(tokens[:i]):
                        placed[" ".join(run)] = None
    kind = kind_of(question)
    if kind == "place":  # a place is where a preposition says it is, or no span is one
        return [s for s in placed if not TITLED.match(s)]
    if kind in ("number", "time"):  # a span that holds none answers nothing
        return [s for s in found if _holds(s, kind)]
    if kind in ("reason", "manner"):  # "Mr. Darcy" is no reason
        return [s for s in found if not TITLED.match(s)]
    return [s for s in found if _holds(s, kind)] or list(found)


def _after_place_word(before: list[str]) -> bool:
    """Whether the words just before a span end with a place preposition, perhaps with
    an article or possessive after it ("under the", "in her")."""
    said = [w.lower() for w in before[-2:]]
    if said and said[-1] in _DETERMINERS:
        said = said[:-1]
    return bool(said) and said[-1] in _PLACE_WORDS


def typed(text: str, question: str) -> list[str]:
    """The spans of `text` that are what a question asking for a number or a time asks
    for (they hold one), in the text's order; none for another kind of question, or where
    the text holds no such span. A small model writes numbers the text does not hold
    ("12 years old" for "fifteen"); chosen among the text's own, it rarely errs."""
    return spans(text, question) if kind_of(question) in ("number", "time") else []


def _holds(span: str, kind: str) -> bool:
    said = [_NUMBERS.get(w, w) for w in words(span)]
    counted = [w for w in said if w in _COUNTS]
    if kind == "number":
        return bool(counted)
    if kind == "time":
        return bool(counted) or any(w in _TIMES for w in said)
    if kind == "person":
        return span[0].isupper()
    return True


def grounded(answer: str, evidence: str, question: str = "", share: float = 0.5) -> bool:
    """Whether a written answer says something, and only what its evidence says: it has
    words of its own beyond the question's (an echo answers nothing), and at least
    `share` of them occur in the evidence (the rest is invention). Stems are compared, so
    "hedgehogs" is grounded by "hedgehog"."""
    asked = {stem(w) for w in words(question)}
    said = [stem(w) for w in words(answer) if w not in FUNCTION_WORDS]
    own = [w for w in said if w not in asked]
    if not own:
        return False
    shown = {stem(w) for w in words(evidence)}
    return sum(w in shown for w in own) >= share * len(own)


def stem(word: str) -> str:
    """A word's crude stem, a digit's number word: what `grounded` compares."""
    word = _NUMBERS.get(word, word)
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word
