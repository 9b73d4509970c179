"""Diff parsing against diffs that real git produced."""

from pathlib import Path

import pytest

from mempipe.errors import UsageError
from mempipe.git import parse_diff, staged_diff
from tests.conftest import sh


def test_kinds_of_change_are_read_from_the_diff(repo: Path) -> None:
    (repo / "app.py").write_text("def greet(name):\n    return f'hello {name}'\n")
    sh(repo, "git", "mv", "old_name.py", "new_name.py")
    sh(repo, "git", "rm", "-q", "gone.txt")
    (repo / "logo.png").write_bytes(b"\x89PNG\0\0\0data")
    (repo / "poetry.lock").write_text("[[package]]\nname = 'x'\n" * 5000)
    (repo / "bundle.min.js").write_text("var a=" + "1+" * 400 + "1;\n")
    (repo / "run.sh").chmod(0o755)
    sh(repo, "git", "add", "-A")
    changes = {c.path: c for c in parse_diff(staged_diff(repo))}
    assert changes["app.py"].kind == "modify" and changes["app.py"].readable
    assert (changes["app.py"].added, changes["app.py"].removed) == (1, 1)
    assert changes["new_name.py"].by_name() == "rename old_name.py to new_name.py"
    assert changes["gone.txt"].by_name() == "delete gone.txt"
    assert changes["logo.png"].binary and changes["logo.png"].by_name() == "add logo.png (binary)"
    assert changes["poetry.lock"].by_name() == "add poetry.lock (generated)"
    assert not changes["bundle.min.js"].readable
    assert changes["run.sh"].by_name() == "make run.sh executable"


def test_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a git repository"):
        staged_diff(tmp_path)
