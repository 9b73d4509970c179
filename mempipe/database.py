"""Opening mempipe's SQLite databases: WAL mode, a busy timeout, numbered migrations.

Shared by the run logs and the memory store so both upgrade the same way."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from mempipe.errors import MempipeError

Migration = Callable[[sqlite_utils.Database], None]
# Seconds a writer waits for another process before giving up.
LOCK_TIMEOUT = float(os.environ.get("MEMPIPE_LOCK_TIMEOUT", "30"))


class DatabaseLocked(MempipeError):
    """Another process kept the database locked for longer than we wait."""


def connect(path: Path | str, migrations: list[Migration]) -> sqlite_utils.Database:
    """The database at `path` (":memory:" for one that lives as long as the process),
    migrated to the latest schema. Transactions are explicit (see `write`)."""
    conn = sqlite3.connect(str(path), timeout=1.0, isolation_level=None,
                           check_same_thread=False)
    db = sqlite_utils.Database(conn)
    if str(path) != ":memory:":
        db.enable_wal()
        # In WAL mode NORMAL still never corrupts; a power cut may lose the last commits.
        db.execute("pragma synchronous = normal")
    with write(db):
        db.execute("create table if not exists _migrations (name text primary key)")
        done = {row[0] for row in db.execute("select name from _migrations").fetchall()}
        for migration in migrations:  # append, never edit: each runs once, in order
            if migration.__name__ not in done:
                migration(db)
                db.execute("insert into _migrations (name) values (?)", [migration.__name__])
    return db


@contextmanager
def write(db: sqlite_utils.Database, timeout: float | None = None) -> Iterator[None]:
    """One write transaction, all or nothing. Taking the write lock is retried with
    backoff while another process holds it (LOCK_TIMEOUT seconds), then fails with a
    clear error."""
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        try:
            db.execute("begin immediate")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseLocked(f"database is locked by another process: "
                                     f"{_name(db)} (waited {timeout:g} s)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    try:
        yield
    except BaseException:
        db.execute("rollback")
        raise
    db.execute("commit")


def _name(db: sqlite_utils.Database) -> str:
    row = db.execute("pragma database_list").fetchone()
    return row[2] or ":memory:"
