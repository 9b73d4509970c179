import pytest

from mempipe import Pipeline, ask, chunk, map, pipe, read, summarize
from mempipe.agents.read import Read
from mempipe.errors import PipelineSyntaxError


@pytest.mark.parametrize(("text", "python"), [
    ("summarize book.txt", read("book.txt") | summarize()),
    ("read a.txt b/*.md | chunk --tokens 300 | summarize --words=80",
     read("a.txt", "b/*.md") | chunk(tokens=300) | summarize(words=80)),
    ("chunk --tokens=64 --overlap 8 | map 'shout it'",
     chunk(tokens=64, overlap=8) | map("shout it")),
    ("""summarize book.txt | ask 'Who said "off with her head"?' --max-tokens 20""",
     read("book.txt") | summarize() | ask('Who said "off with her head"?', max_tokens=20)),
    ("read | summarize --budget 1024", read() | summarize(budget=1024)),
    ("ask '--what' a.txt", read("a.txt") | ask("--what")),
])
def test_dsl_and_python_build_equal_pipelines(text: str, python: Pipeline) -> None:
    assert pipe(text) == python
    assert pipe(str(python)) == python  # printing a pipeline gives DSL that parses back


def test_python_pipelines_compare_by_options() -> None:
    assert read("a") | summarize(words=10) != read("a") | summarize(words=11)
    assert read("a") | summarize() != read("b") | summarize()


def test_no_source_stage_reads_stdin() -> None:
    stages = pipe("chunk | summarize").with_source()
    assert stages[0] == Read(paths=["-"])


@pytest.mark.parametrize(("text", "message", "position"), [
    ("sumarize x", "unknown agent 'sumarize'; did you mean 'summarize'?", 0),
    ("read a | frobnicate", "unknown agent 'frobnicate'", 9),
    ("read a | chunk --size 5", "stage 2 (chunk): unknown option --size (options: --budget, "
     "--tokens, --overlap)", 15),
    ("read a | chunk --tokens", "stage 2 (chunk): option --tokens needs a value", 15),
    ("read a | chunk --tokens lots", "stage 2 (chunk): --tokens: Input should be a valid "
     "integer", 9),
    ("read a | chunk --tokens 20 --overlap 20",
     "stage 2 (chunk): --overlap must be smaller than --tokens", 9),
    ("read a | ask", "stage 2 (ask): missing argument <question>", 9),
    ("read a | summarize b.txt", "stage 2 (summarize): unexpected argument 'b.txt'", 19),
])
def test_bad_stages_name_stage_and_position(text: str, message: str, position: int) -> None:
    with pytest.raises(PipelineSyntaxError) as error:
        pipe(text)
    assert message in str(error.value)
    assert error.value.position == position
