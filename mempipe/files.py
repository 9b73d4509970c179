"""Files written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temporary file beside `path`, which is flushed to disk and then
    renamed onto it: a crash, a kill or a power cut mid-write leaves the old file (or
    none), never half of one. Each writer gets its own temporary name, so two processes
    saving the same file never write into one temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                    dir=path.parent)
    os.close(handle)
    partial = Path(name)
    try:
        write(partial)
        with partial.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)  # the rename itself survives a power cut


def _sync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform whose folders cannot be opened (Windows) has nothing to sync
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
