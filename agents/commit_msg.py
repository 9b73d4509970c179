"""commit-msg: a commit message for a diff, from small agents' work.

Each changed file is described by the model in a tight context (map, concurrent), then the
model writes a subject from those descriptions (reduce). What the change *is* (type,
scope, files added, renamed, generated) is decided by code, not by the model."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from pydantic import Field

from mempipe.agents.base import ReduceAgent
from mempipe.errors import MempipeError
from mempipe.git import FileChange, parse_diff
from mempipe.pipes.cleanup import cut_loop
from mempipe.pipes.context import Context
from mempipe.pipes.item import Item

DESCRIBE = ("A change to the file {path}:\n\n{diff}\n\n---\nIn one short sentence in "
            "{lang}, starting with a verb, say what this change does.")
SUBJECT = ("The changes in one commit:\n{changes}\n\n---\nWrite the commit's subject line in "
           "{lang}: at most 8 words, imperative mood (like \"Add retry to the HTTP client\"), "
           "saying what the commit does. Only the subject line.")
MAX_DESCRIBED = 12  # model calls per message: a 10,000-line diff names the rest
MAX_BULLETS = 10
TYPES = ("feat", "fix", "docs", "test", "refactor", "perf", "build", "ci", "chore", "style")
CONVENTIONAL = re.compile(rf"^({'|'.join(TYPES)})(\([\w./-]+\))?!?: \S")


class NothingToCommit(MempipeError):
    """An empty diff: nothing to describe (exit 1, like `git commit` with nothing staged)."""


class CommitMsg(ReduceAgent):
    """Write a commit message for a diff (piped in, else `git diff --staged`): a
    Conventional Commits subject and a body of bullets."""

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
        readable = [c for c in changes if c.readable][:MAX_DESCRIBED]
        notes = dict(zip([c.path for c in readable],
                         await ctx.map(lambda c: self._describe(c, ctx), readable,
                                       f"describe {len(readable)} files")))
        lines = [f"{c.path}: {notes[c.path]}" if notes.get(c.path) else c.by_name()
                 for c in changes]
        reply = await ctx.generate(SUBJECT.format(changes=_bullets(lines), lang=self.lang),
                                   max_tokens=32)
        subject = self._subject(reply, changes, lines)
        body = _bullets(lines[:MAX_BULLETS])
        if len(lines) > MAX_BULLETS:
            body += f"\n- and {len(lines) - MAX_BULLETS} more files"
        yield Item(text=f"{subject}\n\n{body}", source="diff",
                   meta={"files": [c.path for c in changes]})

    async def _describe(self, change: FileChange, ctx: Context) -> str:
        diff = "\n".join(change.hunks)
        frame = DESCRIBE.format(path=change.path, diff="", lang=self.lang)
        room = ctx.room(48, frame)
        if ctx.count_tokens([diff])[0] > room:  # said, not hidden: the note covers a part
            diff = ctx.chunks(Item(text=diff), room)[0].text
        reply = await ctx.generate(DESCRIBE.format(path=change.path, diff=diff, lang=self.lang),
                                   max_tokens=48)
        return _first_sentence(reply)

    def _subject(self, reply: str, changes: list[FileChange], lines: list[str]) -> str:
        text = _first_sentence(reply.strip().splitlines()[0] if reply.strip() else "")
        text = re.sub(rf"^(subject( line)?:\s*|({'|'.join(TYPES)})(\([^)]*\))?:\s*)", "", text,
                      flags=re.IGNORECASE).strip(" \"'`.")
        if not text:  # the model gave nothing usable: say what changed, by name
            text = changes[0].by_name() + (" and more" if len(changes) > 1 else "")
        if self.style == "plain":
            return _fit(text[:1].upper() + text[1:], self.max_subject)
        prefix = commit_type(changes, " ".join([*lines, text]))
        scope = commit_scope(changes)
        prefix += f"({scope})" if scope else ""
        return _fit(f"{prefix}: {text[:1].lower() + text[1:]}", self.max_subject)


def commit_type(changes: list[FileChange], described: str) -> str:
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
    if re.search(r"\b(fix|fixes|fixed|bug|crash|error|wrong|broken)\b", described, re.I):
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


def _first_sentence(text: str) -> str:
    text = " ".join(cut_loop(text).split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return (match.group(1) if match else text).strip()


def _fit(subject: str, limit: int) -> str:
    """`subject` within `limit` characters, cut between words."""
    if len(subject) <= limit:
        return subject
    cut = subject[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-")


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)
