"""The teacher's answers about a namespace, kept: both trainings (the memory reader, tier 2,
and the namespace's adapter, tier 3) learn from one teacher their caller hands in (`ask
--tier text`, the best reader), and share what it said. A killed or repeated training, or
the other training, asks only what was never asked of this content with these weights.

One file per namespace and weights, JSON lines: the first names the namespace's content
the answers were read from, then one question and its answer a line. Answers about other
content are not read."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import anyio

from mempipe.concurrent import gather
from mempipe.config import home
from mempipe.files import write_atomically
from mempipe.memory import Memory
from mempipe.memory.store import uncounted

# Answers a question about a namespace from the page given (the text the question was made
# from), or from what it recalls of the namespace where the page is ""; "" where there is
# nothing to teach.
Teacher = Callable[[str, str], Awaitable[str]]
KEEP_EVERY = 64  # answers asked between two writes: a killed training loses fewer
_CONTENT: dict[tuple[str, str, tuple], str] = {}


def content(memory: Memory) -> str:
    """The namespace's content, named: answers about, and adapters trained on, other
    content are stale. Hashed once per version of the namespace (`Store.version`): `ask`
    checks it on every question."""
    key = (str(memory.store.path), memory.namespace, memory.store.version(memory.namespace))
    if key not in _CONTENT:
        digest = hashlib.sha256()
        for passage in memory.passages():
            digest.update(passage.text.encode())
        _CONTENT[key] = digest.hexdigest()[:16]
    return _CONTENT[key]


def path_for(namespace: str, model: str) -> Path:
    """Where the teacher's answers about `namespace`, with the weights `model`, are kept."""
    return home() / "teacher" / f"{namespace}-{model}.jsonl"


def answers(memory: Memory, model: str, teacher: Teacher, questions: list[str],
            progress: Callable[[int, int], None] | None = None,
            pages: Mapping[str, str] | None = None) -> dict[str, str]:
    """The teacher's answer to each question, from its page in `pages` where it has one:
    those kept from before, the rest asked (16 at a time) and kept as they come."""
    path, made_from = path_for(memory.namespace, model), content(memory)
    known = kept(path, made_from)
    missing = [q for q in dict.fromkeys(questions) if q not in known]
    for start in range(0, len(missing), KEEP_EVERY):
        part = missing[start:start + KEEP_EVERY]
        said = ask(teacher, part, progress and (
            lambda done, _, start=start: progress(start + done, len(missing))), pages)
        known.update(zip(part, said, strict=True))
        keep(path, made_from, known)
    return {q: known[q] for q in questions}


def ask(answerer: Teacher, questions: list[str],
        progress: Callable[[int, int], None] | None = None,
        pages: Mapping[str, str] | None = None) -> list[str]:
    """Each question's answer by `answerer` (from its page in `pages`, else recalled), 16
    at a time, each reported as it comes. What it recalls is not counted as read: a
    training's questions are not a reader's."""
    done, pages = itertools.count(1), pages or {}

    async def one(question: str) -> str:
        return await answerer(question, pages.get(question, ""))

    def step() -> None:
        if progress:
            progress(next(done), len(questions))

    with uncounted():
        return anyio.run(gather, one, questions, 16, step)


def kept(path: Path, made_from: str) -> dict[str, str]:
    """The answers kept at `path` about the content `made_from` ({} when none)."""
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
