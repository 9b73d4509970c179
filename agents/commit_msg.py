"""commit-msg: a commit message for a diff.

What each file's change is (definitions added, removed or changed; renamed, binary,
generated) is read from the diff by code, and so are the type and scope. The model is asked
for the subject, and its line is kept only when it reads like one; otherwise the subject is
the main file's facts. Measured on real history with the default 135M model: asked to
describe diff hunks it echoes the diff lines or copies the prompt's examples, and asked for
a subject it mostly echoes the prompt, so with it the facts write most subjects; a larger
--model writes its own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from pydantic import Field

from mempipe.errors import MempipeError
from mempipe.git import FileChange, parse_diff
from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import ReduceAgent

SUBJECT = ("Write a git commit subject line in {lang} (at most 8 words, starting with a verb "
           "such as Add, Fix, Change, Remove or Update) for a commit that makes these "
           "changes:\n{changes}\n\n---\nThe subject line, starting with a verb:")
MAX_BULLETS = 10
TYPES = ("feat", "fix", "docs", "test", "refactor", "perf", "build", "ci", "chore", "style")
CONVENTIONAL = re.compile(rf"^({'|'.join(TYPES)})(\([\w./-]+\))?!?: \S")


class NothingToCommit(MempipeError):
    """An empty diff: nothing to describe (exit 1, like `git commit` with nothing staged)."""


class CommitMsg(ReduceAgent):
    """Write a commit message for a diff (piped in, else `git diff --staged`): a
    Conventional Commits subject and a body of bullets, one per file."""

    name: ClassVar[str] = "commit-msg"
    source_at_terminal: ClassVar[str] = "staged-diff"

    style: Literal["conventional", "plain"] = Field(default="conventional",
                                                    description="subject style")
    max_subject: int = Field(default=72, ge=30, le=200, description="subject length, chars")
    lang: str = Field(default="English", description="language of the message")

    async def reduce(self, items: AsyncIterator[Item], ctx: Context) -> AsyncIterator[Item]:
        changes = parse_diff("\n".join([item.text async for item in items]))
        if not changes:
            raise NothingToCommit("empty diff: nothing to write a commit message for")
        lines = [c.bullet() for c in changes]
        shown = lines[:MAX_BULLETS]
        if len(lines) > MAX_BULLETS:
            shown.append(f"and {len(lines) - MAX_BULLETS} more files")
        reply = await ctx.generate(SUBJECT.format(changes=_bullets(shown), lang=self.lang),
                                   max_tokens=32)
        subject, by_model = self._subject(reply, changes)
        yield Item(text=f"{subject}\n\n{_bullets(shown)}", source="diff",
                   meta={"files": [c.path for c in changes], "model_subject": by_model})

    def _subject(self, reply: str, changes: list[FileChange]) -> tuple[str, bool]:
        """The subject line, and whether the model's words made it."""
        text = " ".join(reply.strip().splitlines()[0].split()) if reply.strip() else ""
        text = re.sub(rf"^(subject( line)?:\s*|({'|'.join(TYPES)})(\([^)]*\))?:\s*)", "", text,
                      flags=re.IGNORECASE).strip(" \"'`.")
        by_model = _reads_like_subject(text)
        if not by_model:
            text = main_change(changes)
        if self.style == "plain":
            return _fit(text[:1].upper() + text[1:], self.max_subject), by_model
        prefix = commit_type(changes, text)
        scope = commit_scope(changes)
        prefix += f"({scope})" if scope else ""
        return _fit(f"{prefix}: {text[:1].lower() + text[1:]}", self.max_subject), by_model


def _reads_like_subject(text: str) -> bool:
    """A line that could be a subject: a few words starting with a verb-like word, not an
    echo of the prompt or of a bullet."""
    words = text.split()
    return (2 <= len(words) <= 12 and words[0].isalpha() and words[0][:1].isupper()
            and not re.search(r"\b(subject|commit|changes?:|verb)\b|:|^-", text, re.I))


def main_change(changes: list[FileChange]) -> str:
    """The facts of the file that changed most, preferring code over tests and docs."""
    def weight(change: FileChange) -> tuple[bool, bool, int]:
        path = PurePosixPath(change.path)
        return (change.readable, not (_is_test(path) or _is_docs(path)),
                change.added + change.removed)

    main = max(changes, key=weight)
    facts = main.facts()
    if facts.startswith(("edit (", "new file (")):
        facts = f"{'add' if main.kind == 'add' else 'update'} {main.path}"
    elif main.readable:
        facts = facts.split("; ")[0] + f" in {PurePosixPath(main.path).name}"
    more = len(changes) - 1
    return facts + (f" and {more} more file{'s' * (more > 1)}" if more else "")


def commit_type(changes: list[FileChange], subject: str) -> str:
    """The Conventional Commits type, from which files changed and how."""
    paths = [PurePosixPath(c.path) for c in changes]
    if all(_is_docs(p) for p in paths):
        return "docs"
    if all(_is_test(p) for p in paths):
        return "test"
    if all(p.parts[0] in (".github", ".ci", ".gitlab-ci.yml") for p in paths):
        return "ci"
    if all(c.generated or p.name in BUILD_FILES for c, p in zip(changes, paths)):
        return "build"
    if subject.startswith("bump version"):
        return "chore"
    if re.search(r"\b(fix|fixes|fixed|bug|crash|error|wrong|broken)\b", subject, re.I):
        return "fix"
    if any(c.kind == "add" and not _is_test(p) and not _is_docs(p)
           for c, p in zip(changes, paths)):
        return "feat"
    if all(c.kind in ("delete", "rename") for c in changes):
        return "refactor"
    added = sum(c.added for c in changes)
    return "feat" if added > 2 * sum(c.removed for c in changes) else "refactor"


BUILD_FILES = {"pyproject.toml", "setup.py", "setup.cfg", "Makefile", "Dockerfile",
               "package.json", "Cargo.toml", "go.mod", "requirements.txt"}


def commit_scope(changes: list[FileChange]) -> str | None:
    """The module all changes share: the top folder, or the file's stem for one file."""
    paths = [PurePosixPath(c.path) for c in changes]
    if len(paths) == 1:
        return re.sub(r"[^\w.-]", "", paths[0].stem) or None
    tops = {p.parts[0] for p in paths if len(p.parts) > 1}
    if len(tops) == 1 and all(len(p.parts) > 1 for p in paths):
        return re.sub(r"[^\w.-]", "", tops.pop()).lstrip(".") or None
    return None


def _is_docs(path: PurePosixPath) -> bool:
    return path.suffix in (".md", ".rst", ".txt", ".adoc") or path.parts[0] in ("docs", "doc")


def _is_test(path: PurePosixPath) -> bool:
    return (path.parts[0] in ("tests", "test", "spec") or path.name.startswith("test_")
            or path.stem.endswith(("_test", ".test", ".spec")))


def _fit(subject: str, limit: int) -> str:
    """`subject` within `limit` characters, cut between words."""
    if len(subject) <= limit:
        return subject
    cut = subject[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-")
    return re.sub(r"\s+(in|and|to|of|the|a|for)$", "", cut)


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)
