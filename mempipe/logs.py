"""Every CLI run, logged to SQLite in the mempipe home: `mempipe logs` reads it back, and
any SQLite tool can query it (tables runs, stages, calls)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlite_utils

from mempipe.config import home
from mempipe.database import connect, write
from mempipe.pipes.trace import Trace


def path() -> Path:
    return home() / "logs.db"


def _m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({"id": int, "started": str, "pipeline": str, "model": str,
                       "status": str, "error": str, "seconds": float, "output": str}, pk="id")
    db["stages"].create({"run_id": int, "idx": int, "name": str, "items_in": int,
                         "items_out": int, "calls": int, "tokens_in": int, "tokens_out": int,
                         "seconds": float}, foreign_keys=[("run_id", "runs", "id")])
    db["calls"].create({"run_id": int, "stage": int, "agent": str, "prompt": str,
                        "output": str, "tokens_in": int, "tokens_out": int, "seconds": float},
                       foreign_keys=[("run_id", "runs", "id")])


def _m002_stage_notes(db: sqlite_utils.Database) -> None:
    db["stages"].add_column("notes", str)  # what the stage chose: which tier answered...


MIGRATIONS = [_m001_initial, _m002_stage_notes]  # append, never edit


def open_db() -> sqlite_utils.Database:
    return connect(path(), MIGRATIONS)


def record(pipeline: str, model: str, trace: Trace, status: str, error: str | None,
           seconds: float, output: str) -> int:
    """Store one run with its stages and model calls; returns the run id."""
    db = open_db()
    with write(db):
        run_id = db["runs"].insert({
            "started": (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))
            .isoformat(timespec="seconds"),
            "pipeline": pipeline, "model": model, "status": status, "error": error,
            "seconds": round(seconds, 3), "output": output,
        }).last_pk
        db["stages"].insert_all({"run_id": run_id, "idx": s.index, "name": s.name,
                                 "items_in": s.items_in, "items_out": s.items_out,
                                 "calls": s.calls, "tokens_in": s.tokens_in,
                                 "tokens_out": s.tokens_out, "seconds": round(s.seconds, 3),
                                 "notes": "; ".join(s.notes)}
                                for s in trace.stages)
        db["calls"].insert_all({"run_id": run_id, **vars(c)} for c in trace.calls)
    return int(run_id)


def recent(count: int) -> list[dict[str, Any]]:
    """The last `count` runs, newest first, each with its stages."""
    if not path().exists():
        return []
    db = open_db()
    runs = list(db.query("select * from runs order by id desc limit ?", [count]))
    for run in runs:
        run["stages"] = list(db.query(
            "select name, items_in, items_out, calls, tokens_in, tokens_out, seconds, notes "
            "from stages where run_id = ? order by idx", [run["id"]]))
    return runs
