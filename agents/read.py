"""read: files, globs, directories or stdin become items, one per file."""

from __future__ import annotations

import glob
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import anyio
from pydantic import Field

from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.pipes.context import Context
from mempipe.pipes.pipeline import SourceAgent

SNIFF_BYTES = 8192


class Read(SourceAgent):
    """Read files, globs, directories (recursively) or stdin (-), one item per file."""

    name: ClassVar[str] = "read"
    positional: ClassVar[tuple[str, ...]] = ("paths",)

    paths: list[str] = Field(default_factory=lambda: ["-"], description="files, globs, dirs, -")

    async def produce(self, ctx: Context) -> AsyncIterator[Item]:
        produced = False
        for path in self.paths:
            for source, explicit in _expand(path):
                data = await anyio.to_thread.run_sync(_read_bytes, source)
                if _is_binary(data):
                    if explicit:
                        raise UsageError(f"binary file: {source}")
                    continue  # a directory's images and archives are not text
                text = data.decode("utf-8", errors="replace")
                bad = text.count("\ufffd") - data.decode("utf-8", "ignore").count("\ufffd")
                if bad:
                    ctx.warn(f"{source}: {bad} undecodable bytes replaced")
                if text.strip():
                    produced = True
                    item = Item(text=text, source=source, span=(0, len(text)))
                    ctx.scratch.add(item)  # later stages may recall it (see memory/scratch.py)
                    yield item
        if not produced:
            where = ", ".join(self.paths)
            raise UsageError("empty input" if self.paths == ["-"] else f"empty input: {where}")


def _expand(path: str) -> list[tuple[str, bool]]:
    """(source, named explicitly) for each file that `path` stands for."""
    if path == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise UsageError("no input: stdin is closed")
        return [("-", True)]
    if glob.has_magic(path):
        matches = sorted(p for p in glob.glob(path, recursive=True) if Path(p).is_file())
        if not matches:
            raise UsageError(f"no files match {path}")
        return [(m, False) for m in matches]
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        text_files = [(str(f), False) for f in files if not _is_binary(_head(f))]
        if not text_files:
            raise UsageError(f"no text files in directory {path}")
        return text_files
    if not p.exists():
        raise UsageError(f"no such file: {path}")
    return [(path, True)]


def _read_bytes(source: str) -> bytes:
    if source == "-":
        if sys.stdin.isatty():
            print("mempipe: reading stdin (end with Ctrl-D)", file=sys.stderr)
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError:
        return b"\0"  # unreadable: treated like a binary file and skipped


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:SNIFF_BYTES]
