import pytest

from mempipe.memory.query import asks_for_someone
from mempipe.pipes.answers import names


def test_questions_that_ask_for_someone() -> None:
    for q in ['Who said "hi"?', '"Hi" -- who said that?', "Tell me who opened the door.",
              "Which character cried?",
              "whom did she marry?", "Name the speaker of these words."]:
        assert asks_for_someone(q), q
    for q in ["What did the Queen order?", 'Where did she say "who are you"?', "Why?"]:
        assert not asks_for_someone(q), q


def test_names_leave_out_the_question_and_articles() -> None:
    text = "“Stop,” said the Mock\nTurtle to Alice. The Hatter and Mr. Darcy agreed."
    assert names(text, "Who told Alice to stop?") == ["Mock Turtle", "Hatter", "Mr. Darcy"]
    assert names("The Queen\n\nAlice played.", "Who?") == ["Queen", "Alice"]
    again = text + " Alice saw that Mr. Darcy's coat left."
    assert names(again, "Who told Alice to stop?")[:2] == ["Mr. Darcy", "Mock Turtle"]


def test_names_leave_out_whom_the_question_names_under_the_same_title_or_none() -> None:
    text = "Mr. Darcy came with Colonel Fitzwilliam. Mrs. Bennet saw Mr. Bennet."
    assert names(text, "Which cousin of Darcy's came?") == [
        "Colonel Fitzwilliam", "Mrs. Bennet", "Mr. Bennet"]
    assert names(text, "Who is Mrs. Bennet's husband?") == [
        "Mr. Darcy", "Colonel Fitzwilliam", "Mr. Bennet"]



@pytest.mark.parametrize(("text", "phrase", "speaker"), [
    ("“We must burn the house down!” said the Rabbit’s voice; and Alice called out",
     "We must burn the house down", "Rabbit"),
    ("“Come, let’s try the first figure!” said the Mock Turtle to the Gryphon.",
     "Come, let’s try the first figure", "Mock Turtle"),
    ('"You mistake me, my dear," replied Mr. Bennet.', "You mistake me", "Mr. Bennet"),
    ("“Stop it now,” Alice cried.", "Stop it now", "Alice"),
    ('"My dear Mr. Bennet," said his lady to him one day.', "My dear Mr. Bennet", ""),
    ("“Stop it now,” she said.", "Stop it now", ""),
    ("“Stop it now.” “Why?” said Tom.", "Stop it now", ""),
    ("“Something else,” said the Queen.", "Stop it now", ""),
    ('had not Ernest exclaimed, "Good God, papa! Victor knows."', "Victor knows", "Ernest"),
    ('the master said, "Here is our captain."', "Here is our captain", "the master"),
    ('"Wait," said M. Waldman, "to have gained a disciple."', "gained a disciple", "M. Waldman"),
    ('my mother had said playfully, "I have a present."', "I have a present", "my mother"),
    ("He looked at her. Justine shook her head. “I do not fear to die,” she said.",
     "I do not fear to die", "Justine"),
    # the last name is as often a place or someone spoken of: only a subject is taken
    ("I took him to lunch at the Holborn. “Where were you?” he asked.", "Where were you", ""),
    ("Then Elizabeth wept. “I wish,” cried she, “that I were to die with you.”",
     "that I were to die with you", "Elizabeth"),
    ("“Sit, Jane,” said she.", "Sit, Jane", ""),  # whom she speaks to is not who she is
    ('"Come," said her sister.', "Come", ""),
    ('He wept. My father looked at my book and said, "Do not waste your time."',
     "Do not waste your time", "My father"),
    ('Then Alice looked up and said, "Not I."', "Not I", "Alice"),
    ('When it rained, she looked up and said, "Not I."', "Not I", ""),
    ('Alice saw the Queen, who turned and said, "Not I."', "Not I", ""),
    ('It rained. Alice looked at the Queen and said, "Not I."', "Not I", "Alice"),
    # a passage that begins inside a quotation: straight quotes pair within a paragraph
    ('innocent, my lady." He looked at Justine.\n\nJustine wept. "I do not fear to die," '
     'she said.', "I do not fear to die", "Justine"),
    ('"The Lord be thanked!" cried the old woman.', "The Lord be thanked", "the old woman"),
    ('"Soon," said the man confidently.', "Soon", "the man"),
])
def test_a_quotation_is_attributed_to_whom_the_text_names_next_to_it(
        text: str, phrase: str, speaker: str) -> None:
    from mempipe.pipes.answers import attributed

    assert attributed(text, phrase) == speaker


def test_names_inside_a_quotation_are_whom_it_speaks_to() -> None:
    from mempipe.pipes.answers import unquoted

    said = unquoted('"My dear Frankenstein," exclaimed he, "how glad I am!" Clerval wept.')
    assert names(said, 'Who said "how glad I am"?') == ["Clerval"]
