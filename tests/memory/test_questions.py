"""Questions a namespace asks itself: every kind, tied to its sentence, two wordings, and
taught and held-back facts that never share a passage."""

from __future__ import annotations

from mempipe.memory.questions import KINDS, Fact, answered, facts, sample, split
from mempipe.memory.store import Passage

TEXT = [
    "Martha Quill walked to Dunmore on the Monday. The baker gave Martha Quill a warm loaf "
    "in Dunmore. Martha Quill paid eleven shillings for the loaf.",
    "Later Martha Quill went back to Dunmore because her brother Tobias lived there. "
    "Tobias Quill opened the gate by lifting the heavy latch with both hands.",
    "Tobias Quill carried a lantern to the old church before dinner. "
    '"Nobody lives in Dunmore," said Tobias Quill, who knew better. '
    "Martha Quill stayed with Tobias Quill until the following spring.",
]


def passages(texts: list[str] = TEXT) -> list[Passage]:
    found, start = [], 0
    for i, text in enumerate(texts):
        found.append(Passage(id=i + 1, namespace="n", source="s.txt",
                             span=(start, start + len(text)), text=text, episode=i,
                             created=""))
        start += len(text)
    return found


def by_kind(found: list[Fact]) -> dict[str, list[Fact]]:
    return {kind: [f for f in found if f.kind == kind] for kind in KINDS}


def test_every_kind_is_found_with_the_words_that_answer_it() -> None:
    found = by_kind(facts(passages()))
    answers = {kind: {f.answer for f in group} for kind, group in found.items()}
    assert "Martha Quill" in answers["who"] and "Tobias Quill" in answers["who"]
    assert "a lantern" in answers["what"]
    assert "Dunmore" in answers["where"]       # named mostly after "to", "in", "from"
    assert "the old church" in answers["where"]
    assert {"the Monday", "the following spring"} <= answers["when"]
    assert "eleven shillings" in answers["howmany"]
    assert answers["why"] == {"her brother Tobias lived there"}
    assert answers["how"] == {"lifting the heavy latch with both hands"}


def test_each_fact_is_asked_in_place_and_as_a_blank_to_fill() -> None:
    found = facts(passages())
    paid = next(f for f in found if f.kind == "howmany")
    assert paid.asked == "Martha Quill paid how many shillings for the loaf?"
    assert paid.reworded == 'Which number completes "Martha Quill paid ___ for the loaf"?'
    went = next(f for f in found if f.kind == "why")
    assert went.asked == "Later Martha Quill went back to Dunmore why?"
    first = next(f for f in found if f.kind == "who" and f.span[0] == 0)
    assert first.asked == "Who walked to Dunmore on the Monday?"
    assert TEXT[0][:first.span[1]].strip().endswith("Monday.")  # tied to its sentence
    assert all(f.sentence in " ".join(TEXT[f.passage - 1].split()) for f in found)


def test_what_a_character_says_is_never_the_answer() -> None:
    quoted = [f for f in facts(passages()) if f.passage == 3]
    assert quoted and not any("Nobody" in f.answer or f.answer == "Dunmore" for f in quoted)


def test_taught_and_held_back_facts_never_share_a_passage() -> None:
    found = facts(passages())
    taught, held = split(found, held_back=0.34, seed=1)
    assert taught and held and len(taught) + len(held) == len(found)
    assert not {f.passage for f in taught} & {f.passage for f in held}
    assert split(found, held_back=0.34, seed=1) == (taught, held)


def test_a_sample_takes_every_kind_before_a_second_of_any() -> None:
    found = facts(passages())
    assert {f.kind for f in sample(found, len(KINDS), seed=3)} == set(KINDS)
    assert len(sample(found, 1000)) == len(found)


def test_a_reply_answers_when_it_holds_the_answers_words() -> None:
    fact = next(f for f in facts(passages()) if f.kind == "how")
    assert answered("He lifted it by lifting the heavy latch with his hands.", fact)
    assert not answered("He kicked it open.", fact)
    short = next(f for f in facts(passages()) if f.kind == "howmany")
    assert answered("Eleven shillings.", short) and not answered("Twelve shillings", short)
