"""The prepare-commit-msg hook: `git commit` opens the editor with a drafted message.

The hook never blocks a commit: a failure or a time-out leaves the message as git made it
and says why on stderr."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import anyio

from mempipe.errors import UsageError
from mempipe.git import git, staged_diff

HOOK = "prepare-commit-msg"
CHAINED = f"{HOOK}.mempipe-chained"  # a hook that was there before ours, run first
MARK = "# installed by mempipe"
# git's second argument: -m/-F, merges, squashes and -c/-C/--amend already have a message.
SKIP_SOURCES = {"message", "merge", "squash", "commit"}
DEFAULT_TIMEOUT = 120.0

SCRIPT = f"""#!/bin/sh
{MARK}: drafts the commit message (`mempipe hook uninstall` removes it)
chained="$(dirname "$0")/{CHAINED}"
if [ -x "$chained" ]; then "$chained" "$@" || exit $?; fi
exec "{{python}}" -m mempipe hook run "$@"
"""


def hook_path(cwd: str | Path | None = None) -> Path:
    """Where git looks for the hook (core.hooksPath respected)."""
    relative = git("rev-parse", "--git-path", f"hooks/{HOOK}", cwd=cwd).strip()
    return Path(cwd or ".").joinpath(relative).resolve()


def install(force: bool = False, cwd: str | Path | None = None) -> Path:
    """Write the hook; an existing hook of another kind is kept and run first (--force),
    or the install is refused."""
    path = hook_path(cwd)
    if path.exists() and MARK not in path.read_text(errors="replace"):
        if not force:
            raise UsageError(f"{path} exists; `mempipe hook install --force` keeps it and "
                             "runs it before mempipe")
        path.rename(path.with_name(CHAINED))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def uninstall(cwd: str | Path | None = None) -> Path:
    """Remove our hook and put back the one it chained to, if any."""
    path = hook_path(cwd)
    if not path.exists() or MARK not in path.read_text(errors="replace"):
        raise UsageError(f"no mempipe hook in {path.parent}")
    path.unlink()
    chained = path.with_name(CHAINED)
    if chained.exists():
        chained.rename(path)
    return path


def run(message_file: str, source: str | None = None, timeout: float | None = None,
        model: str | None = None) -> str:
    """What the hook does: draft a message into `message_file` unless git already has one.
    Returns why nothing was written ("" when a message was)."""
    if source in SKIP_SOURCES:
        return ""
    path = Path(message_file)
    existing = path.read_text(errors="replace") if path.exists() else ""
    if any(line.strip() and not line.startswith("#") for line in existing.splitlines()):
        return ""  # a template or message is already there: leave it
    if timeout is None:
        timeout = float(os.environ.get("MEMPIPE_HOOK_TIMEOUT", DEFAULT_TIMEOUT))
    diff = staged_diff()
    if not diff.strip():
        return "nothing staged"
    from mempipe.agents.commit_msg import CommitMsg  # the agents and their model: only now

    async def draft() -> str:
        with anyio.fail_after(timeout):
            return await CommitMsg().pipeline().arun(diff, model=model)

    try:
        message = anyio.run(draft)
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    path.write_text(message.rstrip("\n") + "\n" + existing)
    return ""
