"""commit-msg on the tiny model: format and structure are code's job, so they hold even
when the model's words are noise."""

from pathlib import Path

import pytest

from mempipe.agents.commit_msg import CONVENTIONAL, CommitMsg, NothingToCommit
from mempipe.errors import StageError
from mempipe.git import staged_diff
from mempipe.pipes.trace import Trace
from tests.conftest import sh


def stage(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    sh(repo, "git", "add", "-A")
    return staged_diff(repo)


def test_message_is_a_conventional_commit_naming_files(repo: Path, engine) -> None:
    diff = stage(repo, {"app.py": "def greet(name):\n    return f'hello {name}'\n",
                        "docs/guide.md": "# Guide\n"})
    message = CommitMsg().pipeline().run(diff, engine=engine)
    subject, _, body = message.partition("\n\n")
    assert CONVENTIONAL.match(subject) and len(subject) <= 72, subject
    # A described file reads "path: what changed"; one the model said nothing useful
    # about is named by what happened to it.
    assert body.splitlines()[0].startswith(("- app.py: ", "- update app.py"))
    assert "docs/guide.md" in body.splitlines()[1]


@pytest.mark.parametrize(("files", "prefix"), [
    ({"docs/a.md": "x\n", "README.md": "y\n"}, "docs: "),
    ({"tests/test_a.py": "def test(): pass\n"}, "test(test_a): "),
    ({"poetry.lock": "x = 1\n"}, "build(poetry): "),
    ({"pkg/new.py": "X = 1\n", "pkg/other.py": "Y = 2\n"}, "feat(pkg): "),
])
def test_type_and_scope_come_from_the_files(repo: Path, engine, files, prefix) -> None:
    message = CommitMsg().pipeline().run(stage(repo, files), engine=engine)
    assert message.startswith(prefix), message


def test_plain_style_and_subject_limit(repo: Path, engine) -> None:
    diff = stage(repo, {"app.py": "print('changed')\n"})
    subject = CommitMsg(style="plain", max_subject=30).pipeline().run(
        diff, engine=engine).splitlines()[0]
    assert len(subject) <= 30 and not CONVENTIONAL.match(subject)


def test_a_huge_diff_is_bounded_in_model_calls(repo: Path, engine) -> None:
    files = {f"gen/table_{i}.py": "# @generated\n" + "ROW = 1\n" * 500 for i in range(20)}
    files["big.py"] = "".join(f"def f{i}():\n    return {i}\n" for i in range(5000))
    files.update({f"src/m{i}.py": f"X = {i}\n" for i in range(15)})
    diff = stage(repo, files)
    assert diff.count("\n") > 10_000
    trace = Trace()
    message = CommitMsg().pipeline().run(diff, engine=engine, trace=trace)
    assert len(trace.calls) <= 13  # 12 described files and the subject
    assert "- and 26 more files" in message
    assert all(c.tokens_in + c.tokens_out <= 2048 for c in trace.calls)


def test_empty_diff_is_exit_1(engine) -> None:
    with pytest.raises(StageError, match="empty diff") as error:
        CommitMsg().pipeline().run("", engine=engine)
    assert isinstance(error.value.cause, NothingToCommit) and error.value.exit_code == 1


def test_model_subjects_are_kept_only_when_they_read_like_one() -> None:
    from mempipe.git import FileChange

    agent = CommitMsg()
    changes = [FileChange(path="mempipe/cli.py", added=3, hunks=["@@ -1 +1 @@\n+def show():"])]
    assert agent._subject('Subject: "Add a --json flag to the CLI."\nmore', changes) == (
        "feat(cli): add a --json flag to the CLI", True)
    echoed, by_model = agent._subject("The subject line, starting with a verb:", changes)
    assert echoed == "feat(cli): add show() in cli.py" and not by_model


def test_a_version_bump_is_a_chore_and_long_subjects_end_on_a_word(repo: Path, engine) -> None:
    diff = stage(repo, {"pyproject.toml": 'version = "4.3"\n', "notes.txt": "x\n"})
    assert CommitMsg().pipeline().run(diff, engine=engine).startswith(
        "chore: bump version to 4.3 in pyproject.toml and 1 more file")
    names = "".join(f"def function_number_{i}():\n    pass\n" for i in range(6))
    subject = CommitMsg(max_subject=40).pipeline().run(
        stage(repo, {"src/mod.py": names}), engine=engine).splitlines()[0]
    assert len(subject) <= 40 and not subject.endswith((" in", " and"))
