import pytest

from mempipe.errors import PipelineSyntaxError
from mempipe.pipes.syntax import tokenize


def words(text: str) -> list[list[str]]:
    return [[w.text for w in stage.words] for stage in tokenize(text)]


def test_stages_and_shell_quoting() -> None:
    assert words("""summarize book.txt | ask 'who said "hi"?' --max-tokens=5""") == [
        ["summarize", "book.txt"], ["ask", 'who said "hi"?', "--max-tokens=5"]]
    assert words('ask "a \\"quoted\\" word"|map x') == [["ask", 'a "quoted" word'], ["map", "x"]]
    assert words("map it\\'s") == [["map", "it's"]]
    assert words("read a  # a comment | not a stage\n| chunk") == [["read", "a"], ["chunk"]]
    assert words("ask 'a | b'") == [["ask", "a | b"]]


def test_quoted_words_are_marked() -> None:
    stage = tokenize("ask '--not-an-option' --tokens=3")[0]
    assert [w.quoted for w in stage.words] == [False, True, False]


def test_positions_point_at_words() -> None:
    stages = tokenize("read a.txt |  chunk --tokens 5")
    assert [w.position for w in stages[1].words] == [14, 20, 29]
    assert stages[1].position == 14


@pytest.mark.parametrize(("text", "message", "position"), [
    ("ask 'unclosed", "unbalanced single quote", 4),
    ('ask "unclosed', "unbalanced double quote", 4),
    ("read a || chunk", "empty stage before '|'", 8),
    ("| chunk", "empty stage before '|'", 0),
    ("read a |", "empty stage after the last '|'", 8),
    ("   ", "empty pipeline", 0),
    ("map x\\", "backslash at the end", 5),
])
def test_bad_input_names_the_problem_and_position(text: str, message: str, position: int) -> None:
    with pytest.raises(PipelineSyntaxError) as error:
        tokenize(text)
    assert message in str(error.value)
    assert error.value.position == position
    assert f"at character {position + 1}" in str(error.value)
