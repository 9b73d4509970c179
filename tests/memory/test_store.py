"""The text tier's store, with the real (small) embedding model: what goes in comes back
with its spans, searches fuse BM25 and vectors, a quotation decides, nothing is indexed
twice, and namespaces move between databases exactly."""

import json

import pytest

from mempipe import Item, Memory
from mempipe.errors import UsageError
from mempipe.memory import Store
from tests.conftest import ALICE

BOOK = ALICE.read_text()
QUOTE = "I’ve a right to think"  # the Duchess's line, somewhere in the middle


@pytest.fixture(scope="module")
def alice_store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("store") / "memory.db")
    Memory("alice", store).remember(Item(text=BOOK, source="alice.txt", span=(0, len(BOOK))))
    return store


def test_passages_cover_the_book_with_exact_spans(alice_store: Store) -> None:
    passages = alice_store.passages("alice")
    assert len(passages) > 100
    assert all(BOOK[p.span[0]:p.span[1]] == p.text for p in passages)
    assert [p.episode for p in passages] == list(range(len(passages)))
    assert "".join(p.text for p in passages) == BOOK


def test_a_quoted_phrase_ranks_its_passage_first(alice_store: Store) -> None:
    [best, *_] = alice_store.search(["alice"], f'Who said "{QUOTE}"?', k=3)
    assert QUOTE in best.text
    assert best.source == "alice.txt" and BOOK[best.span[0]:best.span[1]] == best.text


def test_the_passages_holding_a_phrase_are_found_without_counting_a_recall(
        alice_store: Store) -> None:
    before = {p.id: p.recalls for p in alice_store.passages("alice")}
    held = alice_store.holding(["alice"], [QUOTE.upper(), "no such words anywhere here"])
    assert held and all(QUOTE in p.text for p in alice_store.passages("alice") if p.id in held)
    assert {p.id: p.recalls for p in alice_store.passages("alice")} == before


def test_dense_retrieval_finds_a_paraphrase(alice_store: Store) -> None:
    # No quoted phrase and little word overlap: the vectors carry it.
    found = alice_store.search(["alice"], "a grin that stays after the cat disappears", k=5)
    assert any("grin" in p.text for p in found)


def test_every_sentence_is_kept_with_its_vector_where_it_stands(alice_store: Store) -> None:
    passages = alice_store.passages("alice")
    vectors = alice_store.sentence_vectors(passages)
    assert len(vectors) > 2 * len(passages)
    assert all(source == "alice.txt" and BOOK[a:b].strip() for source, a, b in vectors)
    assert all(abs(float(v @ v) - 1) < 0.01 for v in list(vectors.values())[:50])
    assert alice_store.index_sentences("alice") == 0  # nothing is embedded twice


def test_sentences_missing_from_a_namespace_are_indexed_later(tmp_path) -> None:
    store = Store(tmp_path / "m.db")
    Memory("a", store).remember("The key is under the mat. The door is red.")
    store.db.execute("delete from sentences")  # as remembered before sentences were kept
    assert store.sentence_vectors(store.passages("a")) == {}
    assert store.index_sentences("a") == 2
    assert len(store.sentence_vectors(store.passages("a"))) == 2


def test_every_recall_is_counted(alice_store: Store) -> None:
    before = {p.id: p.recalls for p in alice_store.passages("alice")}
    found = alice_store.search(["alice"], "the Mock Turtle's story", k=2)
    after = {p.id: p for p in alice_store.passages("alice")}
    for p in found:
        assert after[p.id].recalls == before[p.id] + 1 and after[p.id].last_recall


def test_the_same_text_is_indexed_once_and_a_changed_file_replaces_the_old(tmp_path) -> None:
    memory = Memory("notes", Store(tmp_path / "m.db"))
    first = Item(text="The key is under the mat. It is blue.", source="notes.txt")
    assert memory.remember(first) > 0
    assert memory.remember(first) == 0
    memory.remember(Item(text="The key is in the drawer now.", source="notes.txt"))
    assert [p.text for p in memory.passages()] == ["The key is in the drawer now."]
    memory.remember("Stdin text is kept beside, not replaced.", source="-")
    memory.remember("Another piece from stdin.", source="-")
    assert len(memory.passages()) == 3


@pytest.mark.slow
def test_export_then_import_round_trips_exactly(alice_store: Store, tmp_path) -> None:
    lines = list(alice_store.export("alice"))
    other = Store(tmp_path / "other.db")
    assert other.import_("copy", lines) == len(lines)
    assert list(other.export("copy")) == lines
    assert other.import_("copy", lines) == 0  # already there: nothing doubles
    assert other.search(["copy"], f'"{QUOTE}"', k=1)[0].text.count(QUOTE) == 1


def test_a_malformed_import_line_is_named_and_nothing_is_kept(alice_store: Store,
                                                              tmp_path) -> None:
    lines = list(alice_store.export("alice"))[:3]
    broken = json.loads(lines[2])
    del broken["span"]
    store = Store(tmp_path / "m.db")
    with pytest.raises(UsageError, match=r"import: line 3: Field required \(span\)"):
        store.import_("copy", [lines[0], lines[1], json.dumps(broken)])
    with pytest.raises(UsageError, match="line 2"):
        store.import_("copy", [lines[0], "{not json"])
    assert store.namespaces() == []


def test_forget_deletes_everything_and_an_unknown_namespace_is_an_error(tmp_path) -> None:
    store = Store(tmp_path / "m.db")
    Memory("a", store).remember("One sentence. Two sentences.")
    Memory("b", store).remember("Kept.")
    assert store.forget("a") == 1
    assert store.namespaces() == ["b"]
    for table in ("vectors", "sentences"):
        assert store.db.execute(f"select count(*) from {table}").fetchone()[0] == 1
    with pytest.raises(UsageError, match="no such namespace: a"):
        store.forget("a")


@pytest.mark.parametrize("name", ["", "a b", "../x", "-x", "x" * 65])
def test_bad_namespace_names_are_refused(name: str, tmp_path) -> None:
    with pytest.raises(UsageError, match="bad namespace name"):
        Memory(name, Store(tmp_path / "m.db"))
