"""The teacher's answers about a namespace, kept: both trainings (the memory reader, tier 2,
and the namespace's adapter, tier 3) learn from one teacher their caller hands in (`ask
--tier text`, the best reader), and share what it said. A killed or repeated training, or
the other training, asks only what was never asked of this content with these weights.

One file per namespace and weights, JSON lines: the first names the namespace's content
the answers were read from, then one question, the page it was read from (a digest, none
where it was recalled: an answer is only reused read the same way) and its answer a line.
Answers about other content are not read.

A trained tier is trusted by `ask --tier auto` only as far as it was measured: asked the
namespace's facts beside the teacher, paired, the result kept with the adapter
(`measure`), and trusted within `CLOSE` of text (`as_good`)."""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from mempipe.concurrent import gather
from mempipe.config import home
from mempipe.files import write_atomically
from mempipe.memory import Memory
from mempipe.memory.questions import Fact, answered
from mempipe.memory.store import uncounted

# Answers a question about a namespace from the page given (the text the question was made
# from), or from what it recalls of the namespace where the page is ""; "" where there is
# nothing to teach.
Teacher = Callable[[str, str], Awaitable[str]]
CLOSE = 0.02  # auto trusts a trained tier measured at most this much below text
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
    those kept from before (of the same question read from the same page, or recalled),
    the rest asked (16 at a time) and kept as they come."""
    path, made_from, pages = path_for(memory.namespace, model), content(memory), pages or {}

    def key(question: str) -> tuple[str, str]:
        return question, digest(pages.get(question, ""))

    known = kept(path, made_from)
    missing = [q for q in dict.fromkeys(questions) if key(q) not in known]
    for start in range(0, len(missing), KEEP_EVERY):
        part = missing[start:start + KEEP_EVERY]
        said = ask(teacher, part, progress and (
            lambda done, _, start=start: progress(start + done, len(missing))), pages)
        known.update(zip(map(key, part), said, strict=True))
        keep(path, made_from, known)
    return {q: known[key(q)] for q in questions}


def digest(page: str) -> str:
    """How a kept answer names the page it was read from ("" where it was recalled)."""
    return hashlib.sha256(page.encode()).hexdigest()[:16] if page else ""


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


def measure(path: Path, memory: Memory, model: str, teacher: Teacher, student: Teacher,
            tier: str, facts: list[Fact], asked: list[str],
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The share of `facts`, each asked as in `asked`, that `student` (the tier `tier`,
    with the adapter at `path`) and `teacher` (text, recalling) answer, paired; kept with
    that adapter and returned."""
    from mempipe.engine.lora import Adapter  # torch: loaded when an adapter is measured

    text = answers(memory, model, teacher, asked, progress)
    said = ask(student, asked, progress)  # not kept: it is this adapter's
    result = {"namespace": memory.namespace, "content": content(memory), "n": len(facts),
              "text": round(statistics.mean(answered(text[q], f)
                                            for f, q in zip(facts, asked, strict=True)), 4),
              tier: round(statistics.mean(answered(reply, f)
                                          for f, reply in zip(facts, said, strict=True)), 4)}
    adapter = Adapter.load(path)
    adapter.about["measured"] = json.dumps(result)
    adapter.save(path)
    return result


def measurement(about: Mapping[str, str], memory: Memory) -> dict[str, Any] | None:
    """What `measure` found of the adapter that `about` describes, on `memory` as it is
    now; None where it was not measured on it."""
    try:
        found = json.loads(about.get("measured", ""))
    except ValueError:
        return None
    fresh = found.get("namespace") == memory.namespace and \
        found.get("content") == content(memory)
    return found if fresh else None


def as_good(about: Mapping[str, str], memory: Memory, tier: str) -> bool:
    """Whether the adapter `about` describes was measured on `memory` as it is now,
    answering as `tier` at most `CLOSE` below text."""
    found = measurement(about, memory)
    return found is not None and found.get(tier, -1.0) >= found["text"] - CLOSE


def kept(path: Path, made_from: str) -> dict[tuple[str, str], str]:
    """The answers kept at `path` about the content `made_from` ({} when none), by their
    question and the `digest` of the page each was read from."""
    try:
        lines = path.read_text().splitlines()
        if json.loads(lines[0]) != {"made_from": made_from}:
            return {}
        return {(row["question"], row.get("page", "")): row["answer"]
                for row in map(json.loads, lines[1:])}
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return {}


def keep(path: Path, made_from: str, answers: dict[tuple[str, str], str]) -> None:
    rows = [{"made_from": made_from}] + [{"question": q, **({"page": page} if page else {}),
                                          "answer": a} for (q, page), a in answers.items()]
    write_atomically(path, lambda to: to.write_text("".join(json.dumps(r) + "\n" for r in rows)))
