"""The memory reader on the tiny random model: questions come from the namespace, training
saves an adapter for these weights, ask reads memories with it (and says when there is
none), and adapters from other weights are refused."""

from __future__ import annotations

import pytest

from mempipe import Memory, ask
from mempipe.agents.ask import teacher
from mempipe.errors import ModelError, UsageError
from mempipe.memory import params, reader, taught
from tests.conftest import mempipe

TEXT = ('"Off with his head, and be quick about it," said the Queen to the Knave. '
        'Alice looked at the Gryphon, who was asleep. "I never heard of such a thing in '
        'all my life," said Alice. ') * 6


@pytest.fixture
def books(engine) -> Memory:
    memory = Memory("books")
    memory.remember(TEXT)
    return memory


def test_questions_ask_who_said_each_quote_then_about_names(books) -> None:
    asked = reader.questions(books, 10)
    assert 'Who said "Off with his head, and be quick about it"?' in asked
    assert 'Who said "I never heard of such a thing in all my life"?' in asked
    assert "What does the text say about Gryphon?" in asked
    assert len(asked) == len(set(asked)) <= 10
    assert reader.questions(books, 10) == asked  # the same sample every time


def test_a_quote_wrapped_over_lines_is_asked_on_one_but_not_across_paragraphs() -> None:
    said, _ = reader.asked_of('"But it must very materially lessen their chance of\n'
                              'marrying men," replied Darcy. "I am quite sure of it.\n\n'
                              'Nobody spoke for a long while after that," she said.')
    assert said == ['Who said "But it must very materially lessen their chance of marrying '
                    'men"?']


def test_training_saves_a_reader_that_ask_reads_memories_with(books, engine, capsys) -> None:
    question = 'Who said "Off with his head"?'
    ask(question, from_="books", tier="kv").pipeline()  # builds
    assert reader.load(engine) is None
    stages = set()
    path, losses = reader.train(books, engine, teacher("books", engine), count=3, epochs=2,
                                rank=2,
                                progress=lambda stage, done, total: stages.add(stage))
    assert path == reader.path_for(engine.fingerprint) and path.is_file()
    assert stages == {"memories", "teacher", "training"} and len(losses) == 2
    adapter = reader.load(engine)
    assert adapter.rank == 2 and adapter.about["trained_on"] == "books"
    assert reader.load(engine) is adapter  # one object, so its rows batch together
    [answer] = ask(question, from_="books", tier="kv").pipeline().items(engine=engine)
    assert answer.meta["tier"] == "kv"
    assert "no memory reader" not in capsys.readouterr().err
    path.unlink()
    ask(question, from_="books", tier="kv").pipeline().items(engine=engine)
    assert "no memory reader trained" in capsys.readouterr().err


def test_an_adapter_from_other_weights_is_refused(engine) -> None:
    adapter = engine.new_adapter(2)
    adapter.model = "0123456789abcdef"
    with pytest.raises(ModelError, match="trained on other weights"):
        engine.score([], ["a"], adapter=adapter)


def test_an_empty_namespace_cannot_train_a_reader(engine) -> None:
    Memory("empty").remember("No quotes here.")
    Memory("empty").store.db.execute("delete from passages")
    with pytest.raises(UsageError, match="no passages"):
        reader.train(Memory("empty"), engine, teacher("empty", engine), count=3)


def test_cli_refuses_a_missing_namespace_in_one_line() -> None:
    result = mempipe("memory", "train-reader", "nowhere")
    assert result.returncode != 0
    assert result.stderr.strip() == "mempipe: no such namespace: nowhere"


def test_an_interrupted_training_keeps_the_teachers_answers(books, engine) -> None:
    def stop_in_training(stage: str, done: int, total: int) -> None:
        if stage == "training":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reader.train(books, engine, teacher("books", engine), count=3, epochs=1, rank=2,
                     progress=stop_in_training)
    path = reader.path_for(engine.fingerprint)
    assert not path.exists() and taught.path_for("books", engine.fingerprint).is_file()
    stages = set()
    reader.train(books, engine, teacher("books", engine), count=3, epochs=1, rank=2,
                 progress=lambda stage, done, total: stages.add(stage))
    assert "teacher" not in stages and "training" in stages  # the answers were kept
    assert path.is_file()


def test_both_trainings_share_one_teachers_answers(books, engine) -> None:
    stages = set()
    reader.train(books, engine, teacher("books", engine), count=3, epochs=1, rank=2)
    asked = [question for question, _ in taught.kept(
        taught.path_for("books", engine.fingerprint), taught.content(books))]
    assert len(asked) == 3
    params.train(books, engine, teacher("books", engine), epochs=1, rank=2, questions=asked,
                 progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"training"}  # the adapter learned from what the reader's teacher said


def test_a_reader_is_measured_against_text_and_auto_reads_memories_only_where_close(
        books, engine) -> None:
    reader.train(books, engine, teacher("books", engine), count=3, epochs=1, rank=2)
    adapter = reader.load(engine)
    assert taught.measurement(adapter.about, books) is None  # not measured: not trusted
    assert not reader.reads_well(adapter, books)
    found = reader.measure(books, engine, teacher("books", engine),
                           teacher("books", engine, "kv"), learned=set(), count=4)
    assert found is not None and 1 <= found["n"] <= 4
    assert 0 <= found["kv"] <= 1 and 0 <= found["text"] <= 1
    adapter = reader.load(engine)  # saved again, with what was measured
    assert taught.measurement(adapter.about, books) == found
    assert reader.reads_well(adapter, books) == (found["kv"] >= found["text"] - taught.CLOSE)
    assert reader.describe(books) == {"reader_measured": found["n"],
                                      "reader_kv_accuracy": found["kv"],
                                      "reader_text_accuracy": found["text"]}
    books.remember("The Hatter said nothing at all.")  # measured on other content
    assert not reader.reads_well(adapter, books)
    assert reader.describe(books)["reader_measured"] is None
    every = {p.id for p in books.passages()}
    assert reader.measure(books, engine, teacher("books", engine),
                          teacher("books", engine, "kv"), learned=every) is None
