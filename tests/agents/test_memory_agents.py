"""remember, recall, focus and ask over memory, on the tiny random model (mechanics: what
is stored, recalled, narrowed and cited; the real model's answers are integration tests)."""

import pytest

from mempipe import Item, ask, focus, pipe, read, recall, remember, summarize
from mempipe.errors import StageError
from mempipe.pipes.trace import Trace

LINES = [f"Line {i} is about the garden and the roses." for i in range(400)]
NEEDLE = "“The tarts are in the blue cupboard,” said the Knave to the Dormouse."


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(" ".join([*LINES[:200], NEEDLE, *LINES[200:]]))
    return path


def test_dsl_and_python_build_the_same_memory_pipelines() -> None:
    assert pipe("read b.txt | remember --into books") == read("b.txt") | remember("books")
    assert (pipe("recall 'tea party' --from books -k 3")
            == recall("tea party", "books", 3).pipeline())
    assert pipe("ask 'q' --from books") == ask("q", from_="books").pipeline()
    assert str(pipe("recall x --from books -k 3")) == "recall x --from=books --k=3"
    with pytest.raises(Exception, match="scratch is each run's own namespace"):
        pipe("read b.txt | remember --into scratch")


def test_remember_passes_items_on_and_recall_cites_spans(book, engine) -> None:
    passed = (read(str(book)) | remember("books")).items(engine=engine)
    assert [p.text for p in passed] == [book.read_text()]
    [best, *_] = recall('"tarts are in the blue cupboard"', "books", 3).pipeline().items(
        engine=engine)
    text = book.read_text()
    assert NEEDLE in best.text and text[best.span[0]:best.span[1]] == best.text
    assert best.source == str(book) and best.meta["namespace"] == "books"


def test_recall_from_an_unknown_namespace_is_a_clear_error(engine) -> None:
    with pytest.raises(StageError, match="no such namespace: nowhere"):
        recall("x", "nowhere").pipeline().run(engine=engine)


def test_ask_from_memory_takes_the_speaker_the_cited_sentence_names(book, engine) -> None:
    (read(str(book)) | remember("books")).run(engine=engine)
    trace = Trace()
    [answer] = ask('Who said "The tarts are in the blue cupboard"?', from_="books"
                   ).pipeline().items(engine=engine, trace=trace)
    [cited] = answer.meta["sources"]
    assert book.read_text()[cited["span"][0]:cited["span"][1]] == NEEDLE
    assert answer.text == "Knave" and answer.meta["decided"] == "attribution"
    assert trace.calls == []  # the text said who: the model was not asked


def test_ask_takes_the_speaker_a_pronoun_refers_to_from_the_passage_around(engine) -> None:
    text = " ".join([*LINES[:40], "The Knave came in, and Alice saw him. “The "
                     "tarts are in the blue cupboard,” said he.", *LINES[40:80]])
    trace = Trace()
    [answer] = ask('Who said "The tarts are in the blue cupboard"?').pipeline().items(
        text, engine=engine, trace=trace)
    assert answer.text == "Knave" and answer.meta["decided"] == "attribution"
    assert trace.calls == []
    [cited] = answer.meta["sources"]  # what names him is cited with the quotation
    assert "The Knave came in, and Alice saw him. “The tarts" in \
        text[cited["span"][0]:cited["span"][1]]


def test_ask_abstains_where_no_one_is_named_and_what_it_wrote_is_not_in_the_text(
        engine) -> None:
    text = " ".join([*LINES[:40], "“the tarts are in the blue cupboard” was written "
                     "on the wall.", *LINES[40:80]])
    [answer] = ask('Who said "the tarts are in the blue cupboard"?').pipeline().items(
        text, engine=engine)
    assert answer.meta["abstained"] and answer.text == "The text does not say."


def test_ask_chooses_a_name_from_the_sentence_where_it_names_no_speaker(engine) -> None:
    text = " ".join([*LINES[:40], "The Knave told the Dormouse “the tarts are in the blue "
                     "cupboard” and left.", *LINES[40:80]])
    trace = Trace()
    [answer] = ask('Who said "the tarts are in the blue cupboard"?').pipeline().items(
        text, engine=engine, trace=trace)
    assert answer.text in ("Knave", "Dormouse")  # chosen from the cited sentence's names
    assert trace.calls[0].output.startswith("chose")


def test_ask_recalls_what_read_read_after_a_summary_replaced_it(book, engine) -> None:
    trace = Trace()
    [answer] = (read(str(book)) | summarize(words=10, budget=512)
                | ask("Where are the tarts?")).items(engine=engine, trace=trace)
    best = answer.meta["sources"][0]
    assert best["source"] == str(book)
    assert NEEDLE in book.read_text()[best["span"][0]:best["span"][1]]


def test_focus_narrows_to_the_sentences_that_bear_on_the_question(engine) -> None:
    text = " ".join([*LINES[:40], NEEDLE, *LINES[40:80]])
    item = Item(text=text, source="x", span=(0, len(text)))
    [narrow] = focus("Where are the tarts?", chars=80).pipeline().items(item, engine=engine)
    assert narrow.text == NEEDLE
    assert item.text[narrow.span[0]:narrow.span[1]] == NEEDLE
