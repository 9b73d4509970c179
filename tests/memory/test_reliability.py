"""The store under several processes, a kill, and a lock: nothing is lost, nothing is
half-written, and waiting ends in a clear error."""

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mempipe import Memory
from mempipe.database import DatabaseLocked
from mempipe.memory import Store

WRITER = """
import sys
from mempipe import Memory
from mempipe.memory import Store
path, name = sys.argv[1], sys.argv[2]
memory = Memory("shared", Store(path))
for i in range(5):
    memory.remember(f"Note {i} from writer {name}. It says {name}-{i}.", source=f"{name}-{i}")
memory.remember("The same text, remembered by every writer.", source="same")
"""

# Fast vectors: this test is about the database, not about embeddings.
BIG = """
import sys
import time
from contextlib import contextmanager
import numpy as np
import mempipe.memory.store as store_module
from mempipe import Memory
from mempipe.memory import Store

class Fast:
    def embed(self, texts): return np.ones((len(texts), 384), np.float32)
    def count_tokens(self, texts): return [len(t.split()) for t in texts]

store = Store(sys.argv[1], embedder=Fast())
plain = store_module.write

@contextmanager
def paused(db, timeout=None):
    with plain(db, timeout):
        yield
        print("written, not yet committed", flush=True)
        time.sleep(60)

if sys.argv[2:] == ["pause"]:
    store_module.write = paused
text = " ".join(f"Sentence {i} of the big book." for i in range(60000))
print(Memory("big", store).remember(text, source="big.txt"), flush=True)
"""


def run(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_four_processes_remembering_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    Store(path)  # the schema exists before the race, as it would for a user
    writers = [run(WRITER, str(path), name) for name in "abcd"]
    assert all(w.wait(timeout=300) == 0 for w in writers)
    store = Store(path)
    texts = [p.text for p in store.passages("shared")]
    for name in "abcd":
        for i in range(5):
            assert any(f"{name}-{i}." in t for t in texts)
    assert texts.count("The same text, remembered by every writer.") == 1
    assert store.stats("shared")[0]["documents"] == 21


def consistent(store: Store) -> None:
    assert store.db.execute("pragma integrity_check").fetchone()[0] == "ok"
    store.db.execute("insert into passages_fts(passages_fts) values ('integrity-check')")
    passages, vectors = (store.db.execute(f"select count(*) from {t}").fetchone()[0]
                         for t in ("passages", "vectors"))
    assert passages == vectors
    orphans = store.db.execute("select count(*) from documents where id not in "
                               "(select document from passages)").fetchone()[0]
    assert orphans == 0


def test_a_process_killed_mid_write_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    Memory("small", Store(path)).remember("Already here. Must survive.")
    writer = run(BIG, str(path), "pause")
    assert writer.stdout.readline().strip() == "written, not yet committed"
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    store = Store(path)
    consistent(store)
    assert store.namespaces() == ["small"]
    assert [p.text for p in store.passages("small")] == ["Already here. Must survive."]
    rerun = run(BIG, str(path))
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0
    added = int(out.split()[-1])
    consistent(store)
    assert added > 100 and len(store.passages("big")) == added


def test_a_locked_database_is_waited_for_then_a_clear_error(tmp_path: Path,
                                                            monkeypatch) -> None:
    import sqlite3

    path = tmp_path / "memory.db"
    memory = Memory("notes", Store(path))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("begin immediate")
    monkeypatch.setattr("mempipe.database.LOCK_TIMEOUT", 0.5)
    with pytest.raises(DatabaseLocked, match=r"database is locked by another process: .*"
                                             r"memory.db \(waited 0.5 s\)"):
        memory.remember("Waiting for the lock.")
    monkeypatch.setattr("mempipe.database.LOCK_TIMEOUT", 10.0)
    threading.Timer(0.5, holder.rollback).start()
    assert memory.remember("Waiting for the lock.") == 1  # retried until released
    holder.close()
