"""Tier 3 on the tiny random model: facts are asked of a namespace and kept, its adapter is
trained and saved apart from every other namespace's, ask --tier params answers with it
and says when it is stale, and what cannot be trained says so."""

from __future__ import annotations

import json

import anyio
import pytest

from mempipe import Memory, ask
from mempipe.agents.ask import teacher
from mempipe.errors import StageError, UsageError
from mempipe.memory import params, questions, taught
from mempipe.memory.taught import content as taught_content

TEXT = ('"Off with his head, and be quick about it," said the Queen to the Knave. '
        'Alice looked at the Gryphon, who was asleep. "I never heard of such a thing in '
        'all my life," said Alice. ') * 6


def test_each_fact_is_learned_in_several_wordings() -> None:
    assert params.forms('Who said "Off with his head"?') == [
        'Who said "Off with his head"?', 'Which character says "Off with his head"?',
        'Whose words are "Off with his head"?']
    assert params.forms("What does the text say about Gryphon?")[1:] == [
        "Tell me about Gryphon.", "What do we learn about Gryphon?"]
    assert params.forms("Who is Mr. Darcy?")[1:] == ["Who's Mr. Darcy?",
                                                     "Tell me who Mr. Darcy is."]
    assert params.forms("Why?") == ["Why?"]


def test_an_adapter_knows_the_questions_it_was_taught_in_any_of_their_forms(engine) -> None:
    adapter = engine.new_adapter(2, {"taught": "Who is Mr. Darcy?\nWhat does the text say "
                                               'about Gryphon?\nWho said "Off with his head, '
                                               'and be quick"?'})
    for asked in ("who is mr. darcy", "Tell me who Mr.  Darcy is!", "Tell me about Gryphon.",
                  'Which character says "off with his HEAD"?', 'Who said "and be quick"?'):
        assert params.knows(adapter, asked), asked
    for asked in ("Who is Mrs. Darcy?", "Who is Gryphon?", "Why?", 'Why "off with his head"?',
                  'Who said "off with her head"?', 'Who said "be quick" and "at once"?'):
        assert not params.knows(adapter, asked), asked
    assert not params.knows(engine.new_adapter(2), "Who is Mr. Darcy?")


def test_auto_takes_a_question_in_other_words_for_a_taught_one_only_if_it_asks_the_same(
        engine) -> None:
    from mempipe.agents.asking.params import taught

    books = Memory("books")
    books.remember(TEXT)
    measured = {"namespace": "books", "content": taught_content(books), "n": 10,
                "text": 0.5, "params": 0.5}
    adapter = engine.new_adapter(2, {"taught": "Who is Mr. Darcy?\nElizabeth walked to "
                                               "Meryton with whom on Monday?",
                                     "measured": json.dumps(measured)})
    for same in ("With whom did Elizabeth walk to Meryton on Monday?",
                 'Which person completes "Elizabeth walked to Meryton with ___ on Monday"?'):
        assert params.nearest(adapter, same)[0] >= params.SIMILAR
        assert taught(adapter, books, same), same
    for other in ("When did Elizabeth walk to Meryton?",  # near, but asks for a time
                  "Who is Mrs. Darcy?",  # near, but another name
                  "Where does Mr. Darcy live?", "Who is Mr. Bingley?", "Why?"):
        assert not taught(adapter, books, other), other
    assert params.nearest(engine.new_adapter(2), "Who is Mr. Darcy?") == (0.0, "")


def test_auto_asks_in_other_words_only_an_adapter_measured_answering_them_as_well_as_text(
        engine) -> None:
    from mempipe.agents.asking.params import taught

    books = Memory("books")
    books.remember(TEXT)
    reworded = "With whom did Elizabeth walk to Meryton on Monday?"

    def adapter_measured(**found: object) -> object:
        return engine.new_adapter(2, {"taught": "Elizabeth walked to Meryton with whom on "
                                                "Monday?\nWho is Mr. Darcy?",
                                      "measured": json.dumps(found)})

    fresh = {"namespace": "books", "content": taught_content(books), "n": 10}
    assert taught(adapter_measured(**fresh, text=0.5, params=0.49), books, reworded)
    for unlike in (adapter_measured(**fresh, text=0.5, params=0.3),  # worse than text
                   adapter_measured(**{**fresh, "content": "changed"}, text=0, params=1),
                   adapter_measured(**{**fresh, "namespace": "other"}, text=0, params=1),
                   engine.new_adapter(2, {"taught": "Who is Mr. Darcy?"})):  # never measured
        assert not taught(unlike, books, reworded)
        assert taught(unlike, books, "who is mr. darcy")  # as taught: always


def test_speakers_are_those_the_text_found_saying_quotes_that_it_names_as_it_does() -> None:
    memory = Memory("speakers")
    memory.remember(TEXT)
    known = {'Who said "a"?': "Alice", 'Who said "b"?': "Queen.", 'Who said "c"?': "Alice",
             'Who said "d"?': "Yes", 'Who said "e"?': "The answer is Alice"}
    assert params.speakers(memory, list(known), known) == ["Alice", "the Queen"]


def test_a_namespace_trains_its_own_adapter_that_ask_answers_with(engine, capsys) -> None:
    books, other = Memory("books"), Memory("other")
    books.remember(TEXT)
    other.remember(TEXT.replace("Queen", "King"))
    question = 'Who said "Off with his head"?'
    with pytest.raises(StageError, match="no adapter for this model: mempipe memory train"):
        ask(question, from_="books", tier="params").pipeline().run(engine=engine)
    stages = set()
    path, losses = params.train(books, engine, teacher("books", engine), count=4, epochs=2, rank=2,
                                progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"teacher", "training"} and len(losses) == 2
    facts = taught.path_for("books", engine.fingerprint).read_text().splitlines()
    assert len(facts) > 1 + 4 and 'Who said \\"' in "".join(facts)
    lessons = params.load(books, engine)[0].about["taught"].splitlines()
    assert any(q.startswith("Who said") for q in lessons)
    assert any(q.startswith("Who is ") for q in lessons)  # a speaker the text tier found
    other_path, _ = params.train(other, engine, teacher("other", engine), count=2, epochs=1, rank=2)
    assert other_path != path and path.is_file() and other_path.is_file()
    adapter, stale = params.load(books, engine)
    assert adapter.about["namespace"] == "books" and not stale
    [answer] = ask(question, from_="books", tier="params").pipeline().items(engine=engine)
    assert answer.meta["tier"] == "params" and answer.text
    assert "changed since" not in capsys.readouterr().err
    books.remember("The Hatter said nothing at all.")
    ask(question, from_="books", tier="params").pipeline().run(engine=engine)
    assert "books has changed since its adapter was trained" in capsys.readouterr().err
    stages.clear()
    params.train(Memory("other"), engine, teacher("other", engine), count=2, epochs=1, rank=2,
                 progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"training"}  # a retrain reads the facts it kept


def test_a_caller_may_name_the_questions_taught_and_only_those_are(engine) -> None:
    books = Memory("books")
    books.remember(TEXT)
    asked = ["Alice looked at whom, who was asleep?", "Who looked at the Gryphon?"]
    params.train(books, engine, teacher("books", engine), epochs=1, rank=2,
                 questions=asked)
    adapter = params.load(books, engine)[0]
    assert set(adapter.about["taught"].splitlines()) <= set(asked)
    assert adapter.about["facts"] == "2"


def test_a_question_given_its_page_is_taught_from_that_page(engine) -> None:
    books = Memory("books")
    books.remember(TEXT)
    seen: list[tuple[str, str]] = []

    async def reading(question: str, page: str) -> str:
        seen.append((question, page))
        return "the Gryphon"

    asked = ["Alice looked at whom?", "Who looked at the Gryphon?"]
    params.train(books, engine, reading, epochs=1, rank=2, steps=1, questions=asked,
                 pages={asked[0]: "Alice looked at the Gryphon."})
    assert sorted(seen) == [(asked[0], "Alice looked at the Gryphon."), (asked[1], "")]
    taught.answers(books, engine.fingerprint, reading, asked)  # recalled, not as read
    assert seen[2:] == [(asked[0], "")]


def test_a_trained_adapter_is_measured_on_the_facts_it_learned_in_other_words(engine) -> None:
    books = Memory("books")
    books.remember(TEXT)
    found = questions.facts(books.passages())
    answer = {f.asked: f.answer for f in found}
    pages: list[str] = []

    async def reading(question: str, page: str) -> str:  # right from the page, else lost
        pages.append(page)
        return answer.get(question, "the Queen") if page or question not in answer else ""

    async def knowing(question: str, page: str) -> str:
        return next(f.answer for f in found if f.reworded == question)

    stages: set[str] = set()
    params.train(books, engine, reading, count=8, epochs=1, rank=2, steps=1, student=knowing,
                 progress=lambda stage, done, total: stages.add(stage))
    adapter = params.load(books, engine)[0]
    learned = [q for q in adapter.about["taught"].splitlines() if q in answer]
    assert learned and any(q.startswith("Who said") for q in adapter.about["taught"].split("\n"))
    assert stages == {"teacher", "training", "measuring"} and any(pages)
    measured = taught.measurement(adapter.about, books)
    assert measured is not None and measured["n"] == len(learned)
    assert measured["params"] == 1.0 and measured["text"] == 0.0  # text never got it
    assert params.by_meaning(adapter, books)
    assert params.describe(books)["adapter_measured"] == len(learned)

    async def unknowing(question: str, page: str) -> str:
        return "nobody"

    params.train(books, engine, reading, count=8, epochs=1, rank=2, steps=1,
                 student=unknowing)
    adapter = params.load(books, engine)[0]
    assert taught.measurement(adapter.about, books)["params"] == 0.0
    books.remember("The Hatter said nothing at all.")
    assert not params.by_meaning(adapter, books)  # measured on what it no longer holds
    assert params.describe(books)["adapter_measured"] is None


def test_the_teacher_reads_the_page_it_is_given_instead_of_recalling(engine) -> None:
    ask = teacher("never-remembered", engine)
    question = "Who looked at the Gryphon?"
    assert anyio.run(ask, question, "") == ""  # nothing to recall from
    assert anyio.run(ask, question, "Alice looked at the Gryphon, who was asleep.") != ""


def test_what_cannot_be_trained_or_asked_says_so(engine) -> None:
    for name in ("plain", "plain2"):
        Memory(name).remember("nothing to ask about here at all.")
    with pytest.raises(UsageError, match="holds no passages to learn facts from"):
        params.train(Memory("plain"), engine, teacher("plain", engine), count=3)
    with pytest.raises(StageError, match="one namespace's adapter"):
        ask("Who?", from_="plain,plain2", tier="params").pipeline().run(engine=engine)
    with pytest.raises(StageError, match="no such namespace: nowhere"):
        ask("Who?", from_="nowhere", tier="params").pipeline().run(engine=engine)


@pytest.mark.slow
def test_tier_auto_takes_the_adapter_when_sure_then_memories_then_text(engine, monkeypatch,
                                                                         capsys) -> None:
    from mempipe.memory import reader
    from mempipe.pipes.trace import Trace

    books = Memory("books")
    books.remember(TEXT)
    question = 'Who said "Off with his head"?'

    def answered(asked: str = question, **options) -> tuple[str, str]:
        trace = Trace()
        [item] = ask(asked, from_="books", **options).pipeline().items(engine=engine,
                                                                        trace=trace)
        return item.meta.get("tier", "text"), "; ".join(trace.stages[0].notes)

    assert answered() == ("text", "answered from text; the text names 'Queen' as the "
                          "speaker: decided without the model")  # no adapter, no memories
    monkeypatch.setattr(params, "CONFIDENT", 0.0)
    params.train(books, engine, teacher("books", engine), count=8, epochs=1, rank=2)
    tier, note = answered()  # a quote within one taught
    assert tier == "params" and note.startswith("answered from params (confidence 0.")
    for untaught in ('Who said "said the Queen to the Knave"?',  # not a quote it learned
                     'Why "Off with his head"?'):  # not who said it
        tier, note = answered(untaught)
        assert tier == "text" and note.startswith("the adapter was never taught this"), untaught
    lesson = params.load(books, engine)[0].about["taught"].splitlines()[0]
    assert answered(params.forms(lesson)[1])[0] == "params"  # taught in another form
    tier, note = answered("Who is the Gryphon's friend?")
    assert tier == "text" and note.startswith("the adapter was never taught this question")
    monkeypatch.setattr(params, "CONFIDENT", 1.01)  # never sure: memory is read
    tier, note = answered()
    assert tier == "text" and note.startswith("the adapter was unsure (0.")
    books.encode_kv(engine)
    assert answered()[0] == "text"  # memories, but no reader to read them well
    engine.new_adapter(2).save(reader.path_for(engine.fingerprint))
    tier, note = answered()  # a reader never measured on books
    assert tier == "text" and "memories not read: the memory reader was not measured" in note
    close = {"namespace": "books", "content": taught.content(books), "n": 300, "text": 0.5,
             "kv": 0.49}
    engine.new_adapter(2, {"measured": json.dumps(close)}).save(
        reader.path_for(engine.fingerprint))
    assert answered()[1].endswith("answered from kv with the memory reader")
    engine.new_adapter(2, {"measured": json.dumps(close | {"kv": 0.45})}).save(
        reader.path_for(engine.fingerprint))
    assert answered()[0] == "text"  # measured 5 points below text
    monkeypatch.setattr(params, "CONFIDENT", 0.0)
    books.remember("The Hatter said nothing at all.")
    tier, note = answered()
    assert tier == "text" and note.startswith("books's adapter is stale, so not asked")
    assert "changed since" not in capsys.readouterr().err  # said in the trace, not warned


def test_content_changes_when_a_file_is_replaced_even_if_its_passage_ids_are_reused(
        tmp_path) -> None:
    memory = Memory("notes")
    memory.remember("The key is under the mat.", source=str(tmp_path / "notes.txt"))
    before, ids = taught.content(memory), [p.id for p in memory.passages()]
    memory.remember("The key is in the drawer.", source=str(tmp_path / "notes.txt"))
    assert [p.id for p in memory.passages()] == ids  # SQLite gave the new text the old ids
    assert taught.content(memory) != before
    assert taught.content(memory) == taught.content(Memory("notes"))
