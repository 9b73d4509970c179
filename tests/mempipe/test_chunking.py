from itertools import pairwise

import pytest

from mempipe.chunking import chunk_spans, sentence_spans
from mempipe.pipes.cleanup import cut_loop, trim_words


def count_words(texts: list[str]) -> list[int]:
    """A stand-in tokenizer for the chunker's arithmetic: one token per word."""
    return [len(t.split()) for t in texts]


TEXT = ("Alice was beginning to get very tired. She had peeped into the book! "
        "'What is the use of a book?' thought Alice.\n\nSo she was considering. " * 6)


def test_sentences_cover_the_text() -> None:
    spans = sentence_spans(TEXT)
    assert "".join(TEXT[a:b] for a, b in spans) == TEXT
    assert TEXT[spans[0][0]:spans[0][1]].strip() == "Alice was beginning to get very tired."


@pytest.mark.parametrize("size", [5, 12, 30, 1000])
def test_chunks_fit_cover_and_end_on_sentences(size: int) -> None:
    spans = chunk_spans(TEXT, size, count_words)
    assert all(n <= size for n in count_words([TEXT[a:b] for a, b in spans]))
    assert spans[0][0] == 0 and spans[-1][1] == len(TEXT)
    assert all(a == prev_b for (_, prev_b), (a, _) in pairwise(spans))  # no gaps
    if size >= 12:  # every sentence fits: cuts fall between sentences
        assert all(TEXT[a:b].rstrip()[-1] in ".!?'" for a, b in spans)


def test_overlap_repeats_trailing_sentences() -> None:
    spans = chunk_spans(TEXT, 30, count_words, overlap=10)
    assert all(b > a2 for (_, b), (a2, _) in pairwise(spans))  # neighbours share text
    assert all(a2 > a for (a, _), (a2, _) in pairwise(spans))  # and always move on


def test_over_long_sentences_and_words_are_split() -> None:
    text = "word " * 50 + "x" * 400
    spans = chunk_spans(text, 10, lambda ts: [max(len(t.split()), len(t) // 4) for t in ts])
    assert "".join(text[a:b] for a, b in spans) == text
    assert all(max(len(text[a:b].split()), (b - a) // 4) <= 10 for a, b in spans)


def test_blank_text_has_no_chunks() -> None:
    assert chunk_spans("  \n ", 10, count_words) == []


def test_trim_words_prefers_sentence_ends() -> None:
    assert trim_words("One two. Three four five.", 4) == "One two."
    assert trim_words("one two three four five", 3) == "one two three"
    assert trim_words("short enough", 5) == "short enough"


def test_cut_loop_stops_where_the_model_repeats_itself() -> None:
    looping = ("The Footman is interrupted by the Duchess. The footman is interrupted by the "
               "Duchess, who is looking at the baby. The footman is interrupted by the Duchess, "
               "who is looking at the baby.")
    assert cut_loop(looping) == ("The Footman is interrupted by the Duchess. The footman is "
                                 "interrupted by the Duchess, who is looking at the baby.")
    assert cut_loop("No loop here at all, just words.") == "No loop here at all, just words."


def test_attributions_and_titles_do_not_end_sentences() -> None:
    text = "“Stop!” said Alice to herself. “Go on,” said Mr. King. The end."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "“Stop!” said Alice to herself. ", "“Go on,” said Mr. King. ", "The end."]
