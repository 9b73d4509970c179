"""Answers a small model can be trusted with: for a question that asks for someone, the
model chooses among the names its evidence holds instead of writing one (a 135M model
writes "The answer is: Lizzy" for the speaker it was shown; asked to choose, it is right
far more often, and its answer is always grounded in the cited text)."""

from __future__ import annotations

import re

from mempipe.chunking import TITLES
from mempipe.memory.query import STOPWORDS, words

# A run of capitalised words, with a title before it ("Mr. Darcy", "Mock Turtle").
_POSSESSIVE = re.compile(r"['’]s$")  # "Alice's" is Alice
_ARTICLE = re.compile(r"^(?:The|A|An)\s+(?=[A-Z])")
_GAP = r"(?:[ \t]+|[ \t]*\n[ \t]*)"  # a name may wrap onto the next line, not cross a paragraph
_NAME = re.compile(rf"\b(?:{TITLES}\.?{_GAP})?[A-Z][\w'’-]*(?:{_GAP}[A-Z][\w'’-]*)*")


# Words that say nothing of their own: a name made only of these ("While", "Well"), or
# an answer made only of these and the question's words, names or answers nothing.
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
    "d", "re", "ve", "m", "answer", "text", "question"})


MAX_OPTIONS = 3  # a small model chooses well among a few names, not among a crowd


def names(text: str, question: str) -> list[str]:
    """The names in `text` a question could be answered by: capitalised runs, the most
    mentioned first (then the first seen), leaving out those made only of the question's
    own words and those the question names ("Mr. Darcy" where it asks about Darcy's
    cousin, though not "Mr. Bennet" where it names Mrs. Bennet); "Alice's" counts as
    Alice."""
    asked = set(words(question))
    counts: dict[str, int] = {}
    for match in _NAME.finditer(text):
        name = _POSSESSIVE.sub("", _ARTICLE.sub("", " ".join(match.group(0).split())))
        said = set(words(name))
        if said and not said <= asked | FUNCTION_WORDS and not named_in(name, question):
            counts[name] = counts.get(name, 0) + 1  # "She", "While" name nobody
    return sorted(counts, key=lambda name: -counts[name])  # a stable sort keeps first seen


TITLED = re.compile(rf"^(?P<title>{TITLES})\.?\s+(?P<rest>.+)$")  # a person: "Mr. Darcy"


def named_in(name: str, question: str) -> bool:
    """Whether the question names the one `name` names: its words after any title, with
    no title before them there or the same one."""
    titled = TITLED.match(name)
    title, rest = (titled["title"], titled["rest"]) if titled else ("", name)
    for found in re.finditer(rf"(?:\b(?P<title>{TITLES})\.?\s+)?\b{re.escape(rest)}\b",
                             question):
        if found["title"] in (None, title):
            return True
    return False



# Who says a quotation, where the text says so next to it: “...,” said the Hatter /
# “...” the Hatter said / "...," replied Elizabeth / "...," said the master / Ernest
# exclaimed, "..." / and "...," said she, where the sentence before begins with her name.
_SPEECH = (r"(?:said|says|cried|replied|asked|answered|added|continued|exclaimed|shouted|"
           r"whispered|remarked|repeated|returned|observed|thought|began|screamed|muttered|"
           r"called|interrupted|pleaded|sighed|went\s+on)")
_NAMED = (rf"(?:(?:the|The)\s+)?(?:{TITLES}\.?\s+|[A-Z]\.\s+)?[A-Z][\w'’-]*"
          rf"(?:\s+[A-Z][\w'’-]*)*")
_ROLE = r"(?:the|my)\s+[a-z][a-z'’-]+\b"  # "the master", "my father": who a story names so
_ROLE_ENDED = rf"(?:the|my)\s+[a-z][a-z'’-]+\s+(?![a-z]+ly\b)[a-z][a-z'’-]+(?=\s*[,.;:!?—])|{_ROLE}"
_PRONOUN = r"(?:he|she)\b"
_SPEAKER = rf"(?:{_NAMED}|{_ROLE_ENDED}|{_PRONOUN})"
_AFTER = re.compile(rf"\s*,?\s*(?:{_SPEECH}\s+(?P<after>{_SPEAKER})"
                    rf"|(?P<before>{_SPEAKER})\s+(?:had\s+)?{_SPEECH}\b)")
_LEADING = re.compile(rf"(?:(?P<who>{_NAMED}|{_ROLE})\s+(?:had\s+)?{_SPEECH}(?:\s+\w+ly)?"
                      rf"|{_SPEECH}\s+(?P<split>{_SPEAKER})\s*,|(?P<joined>\band)\s+{_SPEECH})"
                      r"\s*[,:]?\s*$")
# Who "... and said," refers to: the sentence's subject, a name or a role at its start.
_SUBJECT = re.compile(rf"\s*(?P<who>(?:The|My)\s+[a-z][a-z'’-]+\b|{_NAMED})")
_SENTENCE_END = re.compile(r"[.!?][\"”’]?\s+|\n\s*\n")
# A straight quotation opens where a mark follows a space (or the start) and comes before
# a word, and closes at the next mark that follows a letter or punctuation: a passage may
# begin inside a quotation, and counting marks in pairs would take narration for speech.
_QUOTATION = re.compile(r"“([^”]*)”|(?:(?<=[\s(\[—-])|^)\"(?=[^\s\"])([^\"]*?)(?<=\S)\"")
REACH = 400  # characters searched back for the start of a sentence


def attributed(text: str, phrase: str) -> str:
    """The speaker the text names next to the quotation that holds `phrase` ("" where it
    names none there): after it ("...," said Mr. Bennet), before it (Ernest exclaimed,
    "..."; "...," said Ernest, "..."; My father looked up and said, "..."), or by a pronoun
    after it where the sentence before the quotation begins with a name or a role. A
    quotation's attribution decides who said it, whatever the model would choose."""
    wanted = " ".join(words(phrase))
    for match in _QUOTATION.finditer(text):
        quoted = " ".join(words(match.group(1) or match.group(2) or ""))
        if not wanted or wanted not in quoted:
            continue
        said = _AFTER.match(text, match.end())
        leading = _LEADING.search(text, max(0, match.start() - 80), match.start())
        speaker = (said.group("after") or said.group("before")) if said else \
            (leading.group("who") or leading.group("split")) if leading else ""
        if leading and leading.group("joined") and not said:
            speaker = _subject(text, leading.start())
        if re.fullmatch(_PRONOUN, speaker):
            speaker = _previous_subject(text, match.start())
        name = _cleaned(speaker)
        if set(words(name)) - FUNCTION_WORDS:  # "It said" names nobody
            return name
    return ""


def _cleaned(name: str) -> str:
    """A speaker as a reader names them: "the Hatter's" is Hatter, "Then Elizabeth" is
    Elizabeth."""
    run = name.split()
    while run and run[0].lower() in FUNCTION_WORDS and run[0].lower() not in ("my", "the"):
        run = run[1:]
    name = re.sub(r"^(?:the|The)\s+(?=[A-Z])", "", " ".join(run))
    return _POSSESSIVE.sub("", _ARTICLE.sub("", name))


def _subject(text: str, end: int) -> str:
    """The name or role that begins the sentence ending at `end` ("" where the sentence
    begins otherwise): who "... and said," refers to."""
    start = max([0, *(m.end() for m in _SENTENCE_END.finditer(text, max(0, end - REACH), end))])
    if re.search(r"\b(?:who|which|whom)\b", text[start:end]):  # "..., who turned and said"
        return ""
    found = _SUBJECT.match(text, start, end)
    return found.group("who") if found else ""


def _previous_subject(text: str, start: int) -> str:
    """Whom "...," she said refers to, where the sentence just before the quotation begins
    with a name or a role (Sherlock Holmes sniffed. "...," he said): "" otherwise, since
    the last name mentioned is as often a place, or someone spoken of."""
    # the second part of a split quotation ("...," cried she, "...") reads back past the first
    before = re.sub(rf"\s*,?\s*{_SPEECH}\s+{_PRONOUN}\s*,?\s*$", "",
                    unquoted(text[:start])).rstrip()
    if not before.endswith((".", "!", "?")):
        return ""
    return _subject(before, len(before) - 1)


def unquoted(text: str) -> str:
    """`text` with its quotations blanked: whom a speaker names inside one is whom they
    speak to or of, so a speaker is chosen among the names outside."""
    return _QUOTATION.sub(lambda quotation: " " * len(quotation.group(0)), text)
