import numpy as np

from mempipe.chunking import sentence_spans
from mempipe.item import Item
from mempipe.pipes.reading import evidence, grounded, is_structure, kind_of


def test_kind_is_decided_by_the_first_question_word() -> None:
    assert kind_of("Where did the Rabbit go when Alice followed it?") == "place"
    assert kind_of("When did the Hatter quarrel with Time?") == "time"
    assert kind_of("How many jurors were there?") == "number"
    assert kind_of("How far did she walk?") == "number"
    assert kind_of("How did the Dodo dry them?") == "manner"
    assert kind_of("Why were the roses painted?") == "reason"
    assert kind_of("Which officer introduced him?") == "person"
    assert kind_of("In which county is the estate?") == "place"
    assert kind_of("What did she buy?") == "thing"


def test_headings_titles_and_contents_are_structure_not_content() -> None:
    for text in ("CHAPTER IV.", "Chapter 12", "THE RABBIT SENDS IN A LITTLE BILL",
                 "Down the Rabbit-Hole", "Book 2", "Down the Rabbit-Hole\nCHAPTER II.", "  "):
        assert is_structure(text), text
    for text in ("Alice was beginning to get very tired of sitting by her sister.",
                 "“Off with her head!” the Queen shouted at the top of her voice.",
                 "It was the\nWhite Rabbit, trotting slowly back again."):
        assert not is_structure(text), text


class Words:
    """An embedder that knows only which words two texts share: enough to rank."""

    def embed(self, texts: list[str]) -> np.ndarray:
        vocabulary = sorted({w for t in texts for w in t.lower().split()})
        rows = np.array([[float(w in t.lower().split()) for w in vocabulary] for t in texts])
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_evidence_is_the_sentence_that_bears_on_the_question_never_a_heading() -> None:
    text = ("CHAPTER VII. THE MAD TEA PARTY\n\nThere was a table set out under a tree in "
            "front of the house. The March Hare and the Hatter were having tea at it. "
            "A Dormouse was sitting between them, fast asleep.")
    found = evidence("Where was the table set out for tea?",
                     [Item(text=text, source="book.txt", span=(100, 100 + len(text)))],
                     Words(), limit=2)
    assert "under a tree" in found[0].text
    assert found[0].span[0] >= 100  # spans point into the source
    assert all("CHAPTER" not in e.text for e in found)


def test_evidence_takes_known_vectors_and_embeds_only_the_other_sentences() -> None:
    vocabulary = ["where", "was", "the", "key", "drawer", "cake", "shelf", "cat", "slept"]
    embedded: list[str] = []

    class Fixed:
        def embed(self, texts: list[str]) -> np.ndarray:
            embedded.extend(texts)
            rows = np.array([[float(w in t.lower().strip("?.").split()) for w in vocabulary]
                             for t in texts])
            return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    text = "The cake was on the shelf. The key was in the drawer. The cat slept."
    a, b = sentence_spans(text)[1]
    known = {("book.txt", 10 + a, 10 + b): np.eye(len(vocabulary))[-1]}  # says "slept"
    found = evidence("Where was the key?",
                     [Item(text=text, source="book.txt", span=(10, 10 + len(text)))],
                     Fixed(), limit=3, chars=10, known=known)
    assert found and all("key" not in e.text for e in found)  # its known vector ruled it out
    assert "The key was in the drawer." not in embedded and len(embedded) == 3


def test_a_written_answer_must_say_something_and_only_what_the_evidence_says() -> None:
    shown = "She had put live hedgehogs in as balls, and the flamingoes were mallets."
    question = "What were used as the balls?"
    assert grounded("Live hedgehogs.", shown, question)
    assert grounded("The hedgehog", shown, question)           # stems compared
    assert not grounded("The balls were used.", shown, question)  # an echo of the question
    assert not grounded("A bank in London owned them.", shown, question)  # invented
    assert not grounded("", shown, question)


def test_the_first_question_word_decides_the_kind_even_with_a_clause_after_it() -> None:
    from mempipe.pipes.reading import kind_of

    assert kind_of("Which bird spoke to the girl when her neck had grown long?") == "thing"
    assert kind_of("In which county is the old house?") == "place"
    assert kind_of("By what feast day was the tenant to arrive?") == "time"
    assert kind_of("How far did she walk when the rain began?") == "number"


def test_a_number_question_is_offered_the_evidence_spans_that_count() -> None:
    from mempipe.pipes.reading import typed

    evidence = "When one eats too much, one grows. The door was fifteen inches high."
    found = typed(evidence, "How tall was the door?")
    assert found and all("fifteen" in s for s in found)
    assert typed(evidence, "What did the door look like?") == []
    assert typed("Nothing here counts, not one thing.", "How many doors were there?") == []


def test_a_place_question_is_offered_only_what_a_place_preposition_governs() -> None:
    from mempipe.pipes.reading import spans

    found = spans("She was lying on the bank, with her head in the lap of her sister.",
                  "Where was she lying?")
    assert "bank" in found and "lap of her sister" in found
    assert "head" not in found and "sister" not in found
    assert spans("Please would you tell me, said the girl.", "Where did she go?") == []
    assert "Mr. Darcy" not in spans("She went to Mr. Darcy at Pemberley.", "Where did she go?")


def test_a_span_must_be_what_the_question_asks_for() -> None:
    from mempipe.pipes.reading import spans

    said = "Mr. Wickham spoke of Mr. Darcy's income, which was ten thousand a year."
    found = spans(said, "How large an income did he have?")
    assert "ten thousand" in found and all("ten" in s or "thousand" in s for s in found)
    assert spans("Mr. Wickham spoke to her.", "How old was she?") == []
    assert not any(s.startswith("Mr.") for s in spans(said, "Why did he speak?"))
    assert "Mr. Darcy" in spans("She saw Mr. Darcy.", "What did she see?")
