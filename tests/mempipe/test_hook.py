"""The prepare-commit-msg hook in real repositories, driven by real `git commit`."""

import os
import subprocess
from pathlib import Path

import pytest

from mempipe import hook
from mempipe.errors import UsageError
from tests.conftest import sh


def commit(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GIT_EDITOR=true accepts the drafted message as the editor would show it.
    return subprocess.run(["git", "commit", "-q", *args], cwd=repo, capture_output=True,
                          text=True, env={**os.environ, "GIT_EDITOR": "true", **env})


def last_message(repo: Path) -> str:
    return sh(repo, "git", "log", "-1", "--format=%B").strip()


@pytest.fixture
def model_env(tiny_model: Path, home: Path) -> dict[str, str]:
    return {"MEMPIPE_MODEL": str(tiny_model), "MEMPIPE_HOME": str(home)}


@pytest.mark.slow
def test_install_drafts_the_message_and_uninstall_removes_it(repo: Path, model_env) -> None:
    path = hook.install(cwd=repo)
    assert os.access(path, os.X_OK) and hook.MARK in path.read_text()
    (repo / "app.py").write_text("print('changed')\n")
    sh(repo, "git", "add", "app.py")
    done = commit(repo, env=model_env)
    assert done.returncode == 0, done.stderr
    assert last_message(repo).startswith(("feat(app): ", "refactor(app): ", "fix(app): "))
    hook.uninstall(cwd=repo)
    assert not path.exists()
    with pytest.raises(UsageError, match="no mempipe hook"):
        hook.uninstall(cwd=repo)


@pytest.mark.slow
def test_an_existing_hook_is_kept_chained_or_install_refused(repo: Path, model_env) -> None:
    existing = Path(hook.hook_path(repo))
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_text("#!/bin/sh\necho chained-ran >> \"$(git rev-parse --git-dir)/ran\"\n")
    existing.chmod(0o755)
    with pytest.raises(UsageError, match="--force"):
        hook.install(cwd=repo)
    hook.install(force=True, cwd=repo)
    (repo / "app.py").write_text("print('again')\n")
    sh(repo, "git", "add", "app.py")
    assert commit(repo, env=model_env).returncode == 0
    assert (repo / ".git" / "ran").read_text() == "chained-ran\n"
    hook.uninstall(cwd=repo)
    assert existing.read_text().startswith("#!/bin/sh\necho chained-ran")


def test_messages_given_by_the_user_are_left_alone(repo: Path, model_env) -> None:
    hook.install(cwd=repo)
    (repo / "app.py").write_text("print(1)\n")
    sh(repo, "git", "add", "app.py")
    assert commit(repo, "-m", "my own words", env=model_env).returncode == 0
    assert last_message(repo) == "my own words"
    assert commit(repo, "--amend", "--no-edit", env=model_env).returncode == 0
    assert last_message(repo) == "my own words"
    sh(repo, "git", "checkout", "-q", "-b", "side")
    (repo / "side.txt").write_text("side\n")
    sh(repo, "git", "add", "side.txt")
    commit(repo, "-m", "side work", env=model_env)
    sh(repo, "git", "checkout", "-q", "main")
    (repo / "main.txt").write_text("main\n")
    sh(repo, "git", "add", "main.txt")
    commit(repo, "-m", "main work", env=model_env)
    merged = subprocess.run(["git", "merge", "--no-ff", "--no-edit", "side"], cwd=repo,
                            capture_output=True, text=True,
                            env={**os.environ, "GIT_EDITOR": "true", **model_env})
    assert merged.returncode == 0, merged.stderr
    assert last_message(repo) == "Merge branch 'side'"


@pytest.mark.slow
def test_a_failing_model_never_blocks_the_commit(repo: Path, home: Path) -> None:
    hook.install(cwd=repo)
    (repo / "app.py").write_text("print(2)\n")
    sh(repo, "git", "add", "app.py")
    env = {"MEMPIPE_MODEL": "/no/such/model", "MEMPIPE_HOME": str(home)}
    # The hook leaves the message empty; git then stops at the empty message, as it would
    # without the hook, and the user sees why the draft is missing.
    done = commit(repo, env=env)
    assert "mempipe: no message drafted: " in done.stderr and "unknown model" in done.stderr
    assert "Traceback" not in done.stderr
    assert commit(repo, "-m", "by hand", env=env).returncode == 0


def test_the_draft_times_out(repo: Path, model_env, tmp_path: Path, monkeypatch) -> None:
    (repo / "app.py").write_text("print(3)\n")
    sh(repo, "git", "add", "app.py")
    message = tmp_path / "MSG"
    message.write_text("# git's comments\n")
    monkeypatch.chdir(repo)
    for name, value in model_env.items():
        monkeypatch.setenv(name, value)
    assert hook.run(str(message), timeout=0.001) == "timed out after 0.001 s"
    assert message.read_text() == "# git's comments\n"
