"""Questions a namespace can ask itself, of every kind a reader asks (who, what, where,
when, how many, why, how), each tied to the fact it rests on: one sentence of one passage
and the words of it that answer.

Made from the text alone, with no model (the default one cannot write a question): the
answering words are found by their form: a count before its unit, a time after its
preposition, a place the text names mostly after "in", "at", "to" or "from" (or a room, a
garden, a town), the person a sentence begins with, the thing a person's verb takes, the
reason after "because", the way after "by". Each fact is asked in two wordings: the
sentence asking for its words in place ("Alice took what from the shelf?"), and a blank
to fill with their kind ('Which thing completes "Alice took ___ from the shelf"?'). What a
character says is never the answer (a quotation states what they say, not what is so),
and a sentence that names nobody and nowhere is too vague to ask of a whole book, except
for who did what and where.

Facts are split by passage (`split`), so a fact taught and a fact held back never share
one. A reply answers a fact when it holds its words (`answered`)."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mempipe.chunking import TITLES, sentence_spans
from mempipe.memory.store import Passage

KINDS = ("who", "what", "where", "when", "howmany", "why", "how")
BLANK_NOUNS = {"who": "person", "what": "thing", "where": "place", "when": "time",
               "howmany": "number", "why": "reason", "how": "way"}
WORDS = (6, 40)  # a sentence asked of is at least and at most this many words
ANSWER_WORDS = 8  # a reason or a way is cut to its first words
PLACE_SHARE = 0.5  # a name is a place where at least this share of its mentions follow
# "in", "at", "to" or "from" (London, Pemberley), and it is mentioned at least twice

_NUMBER = (r"(?i:\d[\d,]*|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
           r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|"
           r"forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)")
_COUNT = re.compile(rf"\b(?P<answer>{_NUMBER}(?:(?:[ -](?:and )?| or | to ){_NUMBER})*"
                    rf"(?: (?P<unit>[a-z]{{3,}}s)))\b")
_TIME_WORDS = (r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|"
               r"February|March|April|June|July|August|September|October|November|"
               r"December|spring|summer|autumn|winter|Christmas|Easter|morning|evening|"
               r"night|noon|midnight|dawn|dusk|sunset|sunrise|breakfast|dinner|supper)")
_TIME = re.compile(rf"\b(?:on|by|at|in|before|after|until|till|since|during) "
                   rf"(?P<answer>(?:the )?(?:(?:next|last|following|same|very) )?"
                   rf"{_TIME_WORDS}(?: (?:morning|evening|night|week))?)\b(?! [A-Z])"
                   rf"|\b(?:at )?(?P<clock>(?:one|two|three|four|five|six|seven|eight|nine|"
                   rf"ten|eleven|twelve|\d{{1,2}}) o'clock)")
_PLACE_PREPOSITION = r"(?:in|at|to|into|from|near|towards|through)"
_PLACE_NOUNS = (r"(?:house|garden|hall|room|kitchen|library|parlour|drawing-room|church|"
                r"chapel|town|village|city|street|road|lane|park|wood|woods|forest|field|"
                r"river|lake|sea|shore|beach|island|mountain|hill|valley|cottage|castle|"
                r"palace|inn|shop|school|court|courtyard|cellar|attic|tower|bridge|"
                r"harbour|country|window|door|table|tree|well|cave|ship|boat|carriage)")
_LOWER_PLACE = re.compile(rf"\b{_PLACE_PREPOSITION} (?P<answer>the (?:[a-z]+ )?{_PLACE_NOUNS})"
                          r"\b")
_CAPITAL_RUN = rf"(?!(?:{TITLES})\b)[A-Z][a-z]+(?: (?:of |de |la )?[A-Z][a-z]+)*"
_CAPITALISED = re.compile(rf"(?<=[a-z,;] )(?:(?:{TITLES})\.? )?(?P<name>{_CAPITAL_RUN})")
_AFTER_PLACE_WORD = re.compile(rf"\b{_PLACE_PREPOSITION} "
                               rf"(?:the )?(?P<name>{_CAPITAL_RUN})")
_NAME = rf"(?:(?:{TITLES})\.? )?{_CAPITAL_RUN}"
_CLAUSE_START = r"(?:^|[;:] |, (?:and|but|then|while|when|till|until) )"
_SUBJECT = re.compile(rf"{_CLAUSE_START}(?P<answer>(?:[Tt]he )?{_NAME}) (?=[a-z])")
_OBJECT = re.compile(rf"(?P<who>(?:[Tt]he )?{_NAME}) (?P<verb>[a-z]+) "
                     r"(?P<answer>(?:a|an|the|some|his|her|their) (?:[a-z-]+ ){0,2}?[a-z-]+)"
                     r"(?= (?:from|to|in|into|on|at|with|for|out|of|off|under|over|and)\b|[,;.!?])")
_QUOTED = re.compile(r'"[^"]*"?|“[^”]*”?')  # to the quote's end, or the sentence's
_REASON = re.compile(r"\b(?:because|for fear that) (?P<answer>[^,;:.!?]+)")
_WAY = re.compile(r"\bby (?P<answer>[a-z]+ing\b[^,;:.!?]*)")
# capitalised words that begin a clause but name nobody
_NOT_SUBJECTS = frozenset({
    "The", "A", "An", "It", "He", "She", "They", "We", "You", "I", "This", "That", "These",
    "Those", "There", "Here", "Then", "When", "What", "Who", "Why", "How", "Where", "But",
    "And", "Or", "So", "If", "As", "At", "In", "On", "Of", "For", "To", "With", "By",
    "From", "After", "Before", "Upon", "Now", "Yet", "Still", "Nor", "Not", "No", "Yes",
    "Oh", "Well", "All", "Some", "One", "His", "Her", "Their", "Its", "My", "Our", "Your",
})
# what follows a name that is not its verb
_NOT_VERBS = frozenset({
    "and", "or", "but", "of", "to", "in", "on", "at", "with", "for", "from", "as", "that",
    "who", "which", "whose", "the", "a", "an",
})
# verbs whose object is no thing the person did something with
_NOT_TAKEN = frozenset({
    "is", "was", "were", "are", "be", "been", "am", "has", "had", "have", "seemed",
    "looked", "felt",
})
# what ends an object that is a measure of time or degree
_NOT_THINGS = frozenset({
    "little", "moment", "minute", "first", "last", "way", "while", "time", "bit", "few",
    "great", "good", "deal", "long",
})


@dataclass(frozen=True)
class Fact:
    """One thing a passage states, and two wordings of a question asking for it."""

    passage: int  # the passage's id
    source: str
    span: tuple[int, int]  # the sentence, in its source
    sentence: str
    answer: str  # the sentence's words that answer
    kind: str  # one of KINDS
    asked: str  # the sentence asking for its answer in place
    reworded: str  # the sentence with a blank to fill with the answer's kind


def facts(passages: Iterable[Passage]) -> list[Fact]:
    """Every fact the passages' narration states that one of the forms above finds, in
    passage order; one per sentence and kind."""
    passages = list(passages)
    places, people = _names([p.text for p in passages])
    found: list[Fact] = []
    for passage in passages:
        for a, b in sentence_spans(passage.text):
            sentence = " ".join(passage.text[a:b].split())
            if not _sentence(sentence):
                continue
            span = (passage.span[0] + a, passage.span[0] + b)
            for kind, start, end, answer in _answers(sentence, places, people):
                found.append(Fact(passage.id, passage.source, span, sentence, answer, kind,
                                  _asked(sentence, kind, start, end),
                                  _reworded(sentence, kind, start, end)))
    return found


def split(found: list[Fact], held_back: float = 0.5, seed: int = 0
          ) -> tuple[list[Fact], list[Fact]]:
    """The facts to teach and the facts held back, by passage: a share `held_back` of the
    passages that state any, drawn with `seed`, are held back whole."""
    ids = sorted({f.passage for f in found})
    random.Random(seed).shuffle(ids)
    kept_back = set(ids[:round(held_back * len(ids))])
    return ([f for f in found if f.passage not in kept_back],
            [f for f in found if f.passage in kept_back])


def sample(found: list[Fact], count: int, seed: int = 0) -> list[Fact]:
    """Up to `count` facts drawn with `seed`, every kind as evenly as the facts allow."""
    chooser = random.Random(seed)
    by_kind = {kind: chooser.sample(group, len(group)) for kind in KINDS
               if (group := [f for f in found if f.kind == kind])}
    chosen: list[Fact] = []
    while len(chosen) < count and any(by_kind.values()):
        for group in by_kind.values():
            if group and len(chosen) < count:
                chosen.append(group.pop())
    return chosen


def answered(reply: str, fact: Fact) -> bool:
    """Whether `reply` gives the fact's answer: its words, case and punctuation aside; for
    an answer of more than three words (a reason, a way), most of them."""
    said, wanted = _words(reply), _words(fact.answer)
    if len(wanted) <= 3:
        return " ".join(wanted) in " ".join(said)
    return sum(w in said for w in wanted) >= 2 * len(wanted) / 3


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _sentence(sentence: str) -> bool:
    words = len(sentence.split())
    return (WORDS[0] <= words <= WORDS[1] and sentence[0].isalpha() and sentence[0].isupper()
            and sentence.rstrip()[-1] in ".!?" and any(c.islower() for c in sentence))


def _names(texts: list[str]) -> tuple[set[str], set[str]]:
    """The namespace's places (names mostly after a place's preposition) and people
    (the other names it mentions mid-sentence, at least twice)."""
    mentions: Counter[str] = Counter()
    placed: Counter[str] = Counter()
    for text in texts:
        flat = " ".join(text.split())
        mentions.update(m["name"] for m in _CAPITALISED.finditer(flat))
        placed.update(m["name"] for m in _AFTER_PLACE_WORD.finditer(flat))
    places = {name for name, n in mentions.items()
              if n >= 2 and placed[name] >= PLACE_SHARE * n}
    people = {name for name, n in mentions.items()
              if n >= 2 and name not in places and name.split()[0] not in _NOT_SUBJECTS}
    return places, people


def _answers(sentence: str, places: set[str], people: set[str]
             ) -> list[tuple[str, int, int, str]]:
    """(kind, start, end, answer) of each fact the sentence states, at most one a kind:
    start..end is what the question replaces (a preposition with its place or time)."""
    found: dict[str, tuple[int, int, str]] = {}
    if m := _COUNT.search(sentence):
        found["howmany"] = (m.start(), m.end(), m["answer"])
    if m := _TIME.search(sentence):
        found["when"] = (m.start(), m.end(), m["answer"] or m["clock"])
    for m in re.finditer(rf"\b{_PLACE_PREPOSITION} (?:the )?(?P<answer>{_CAPITAL_RUN})",
                         sentence):
        if m["answer"] in places:
            found.setdefault("where", (m.start(), m.end(), m["answer"]))
    if "where" not in found and (m := _LOWER_PLACE.search(sentence)):
        found["where"] = (m.start(), m.end(), m["answer"])
    for m in _SUBJECT.finditer(sentence):
        words = sentence[m.end():].split()
        if _person(m["answer"], people) and words and words[0] not in _NOT_VERBS:
            found.setdefault("who", (m.start("answer"), m.end("answer"), m["answer"]))
    for m in _OBJECT.finditer(sentence):
        if _person(m["who"], people) and m["verb"] not in _NOT_VERBS | _NOT_TAKEN \
                and m["answer"].split()[-1] not in _NOT_THINGS:
            found.setdefault("what", (m.start("answer"), m.end("answer"), m["answer"]))
    if m := _REASON.search(sentence):
        found["why"] = (m.start(), m.end(), _first_words(m["answer"]))
    if m := _WAY.search(sentence):
        found["how"] = (m.start(), m.end(), _first_words(m["answer"]))
    named = any(name in sentence for name in people | places)
    quoted = [m.span() for m in _QUOTED.finditer(sentence)]
    return [(kind, *found[kind]) for kind in KINDS if kind in found
            and (named or kind in ("who", "where"))
            and not any(a < found[kind][1] and found[kind][0] < b for a, b in quoted)]


def _person(name: str, people: set[str]) -> bool:
    bare = re.sub(rf"^(?:The )?(?:{TITLES})\.? ", "", name).removeprefix("The ")
    return bare in people or name in people


def _first_words(text: str) -> str:
    return " ".join(text.split()[:ANSWER_WORDS])


def _asked(sentence: str, kind: str, start: int, end: int) -> str:
    """The sentence asking for start..end in place ("Who" where it begins the sentence)."""
    body = sentence.rstrip(" .!?")
    asking = f"how many {sentence[start:end].split()[-1]}" if kind == "howmany" else kind
    if start == 0:
        asking = asking.capitalize()
    return f"{body[:start]}{asking}{body[end:]}?"


def _reworded(sentence: str, kind: str, start: int, end: int) -> str:
    """The sentence with the answer's place left blank, to fill with its kind."""
    body = sentence.rstrip(" .!?")
    return f'Which {BLANK_NOUNS[kind]} completes "{body[:start]}___{body[end:]}"?'
