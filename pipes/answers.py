"""Answers a small model can be trusted with: for a question that asks for someone, the
model chooses among the names its evidence holds instead of writing one (a 135M model
writes "The answer is: Lizzy" for the speaker it was shown; asked to choose, it is right
far more often, and its answer is always grounded in the cited text)."""

from __future__ import annotations

import re

from mempipe.memory.query import words

_ASKS_FOR_SOMEONE = re.compile(r"^\W*(who|whom|whose)\b", re.IGNORECASE)
TITLES = r"(?:Mr|Mrs|Ms|Miss|Dr|Lady|Lord|Sir|Madam|Colonel|Captain|King|Queen|Prince|Princess)"
# A run of capitalised words, with a title before it ("Mr. Darcy", "Mock Turtle").
_ARTICLE = re.compile(r"^(?:The|A|An)\s+(?=[A-Z])")
_NAME = re.compile(rf"\b(?:{TITLES}\.?\s+)?[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*")


def asks_for_someone(question: str) -> bool:
    return bool(_ASKS_FOR_SOMEONE.match(question))


MAX_OPTIONS = 3  # a small model chooses well among a few names, not among a crowd


def names(text: str, question: str) -> list[str]:
    """The names in `text` a question could be answered by: capitalised runs, first seen
    first, leaving out those made only of the question's own words."""
    asked = set(words(question))
    found: list[str] = []
    for match in _NAME.finditer(text):
        name = _ARTICLE.sub("", " ".join(match.group(0).split()))
        if set(words(name)) <= asked or name in found:
            continue
        found.append(name)
    return found
