"""Extracts for summaries, and the checks a retold sentence passes before it is kept."""

from mempipe.agents.summarize import _unfaithful
from mempipe.item import Item
from mempipe.pipes import extracts

STORY = ("Anna opened the gate and walked into the orchard. "
         "The orchard was full of old apple trees. "
         "Her brother Tom was waiting under the tallest tree. "
         "He had brought a basket for the apples. "
         "They filled the basket before the rain came. "
         "Then Anna and Tom ran home across the wet field.")


class Words:
    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


class Letters:
    """An embedder stand-in: each sentence as its letter counts, at unit length."""

    def embed(self, texts: list[str]):
        import numpy as np

        rows = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"]
                         for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_parts_are_consecutive_and_cover_every_sentence() -> None:
    sentences = [f"sentence {i} " + "word " * (i % 5) for i in range(20)]
    parts = extracts._parts(sentences, 4)
    assert [i for part in parts for i in part] == list(range(20))
    assert len(parts) == 4 and all(len(p) >= extracts.PART_SENTENCES for p in parts)
    assert len(extracts._parts(sentences[:5], 4)) == 1  # too few sentences to cut


def test_extracts_are_in_order_within_room_and_their_best_is_theirs() -> None:
    found = extracts.extract([Item(text=STORY)], 2, Letters(), Words().count_tokens, room=20)
    assert [e.index for e in found] == [0, 1]
    for e in found:
        assert len(e.text.split()) <= 20 and e.best in e.text and e.best in STORY
    assert extracts.extract([Item(text="CHAPTER I\n\nCHAPTER II")], 2, Letters(),
                            Words().count_tokens, room=20) == []


def test_a_retelling_is_kept_only_when_faithful() -> None:
    shown = STORY
    assert _unfaithful("Anna and her brother Tom filled a basket with apples.", shown, []) == ""
    assert "named Mary" in _unfaithful("Anna and Mary filled a basket with apples.", shown, [])
    assert "does not" in _unfaithful("The story is a delightful tale of friendship and "
                                     "courage.", shown, [])
    assert "repeats itself" in _unfaithful("Anna opened the gate and Anna opened the gate "
                                           "again.", shown, [])
    assert "said nothing" in _unfaithful("Anna and Tom.", shown, [])
    same = "Anna and her brother Tom filled a basket with apples."
    assert "repeated" in _unfaithful(same, shown, [same])


def test_first_sentence_drops_a_reply_cut_off_mid_sentence() -> None:
    assert extracts.first_sentence("Tom waited. Then he") == "Tom waited."
    assert extracts.first_sentence("Tom waited under the") == ""
    assert extracts.first_sentence('He said "Go home."') == 'He said "Go home."'
