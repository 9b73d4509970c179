"""A teacher's answers, kept beside the adapter being trained: a killed or repeated
training asks only what it has not asked before. One format for every training: JSON
lines, the first naming what the answers were made from (the namespace's content, or the
questions and passages planned), then one question and its answer a line. Answers made
from anything else are not read."""

from __future__ import annotations

import json
from pathlib import Path

from mempipe.files import write_atomically


def kept(path: Path, made_from: str) -> dict[str, str]:
    """The answers kept at `path` for questions about `made_from` ({} when none)."""
    try:
        lines = path.read_text().splitlines()
        if json.loads(lines[0]) != {"made_from": made_from}:
            return {}
        return {row["question"]: row["answer"] for row in map(json.loads, lines[1:])}
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return {}


def keep(path: Path, made_from: str, answers: dict[str, str]) -> None:
    rows = [{"made_from": made_from}] + [{"question": q, "answer": a}
                                         for q, a in answers.items()]
    write_atomically(path, lambda to: to.write_text("".join(json.dumps(r) + "\n" for r in rows)))
