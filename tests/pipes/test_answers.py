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

