"""Tier 3: what a namespace holds, trained into a LoRA adapter, so the model answers
questions about it with nothing recalled and nothing read (Memory³'s parameters tier).

Training data comes from memory itself: questions about the namespace's passages (who
said each quote, what the text says about the names it mentions), each answered by `ask`
reading the passages as text (tier 1, its best reader), each asked in a few forms (a fact
seen in one wording is learned poorly). The facts are kept beside the adapter, so a
retrain reads the same ones. The adapter names the namespace's content: when the
namespace changes, it is reported stale."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from mempipe.config import home
from mempipe.engine.base import Message
from mempipe.errors import UsageError
from mempipe.files import write_atomically
from mempipe.memory import Memory, kv, reader
from mempipe.pipes.progress import staged

QUESTIONS, EPOCHS, RANK, LR = 300, 3, 16, 1e-3
ANSWER_TOKENS = 24
PROMPT = "Question: {question}\nAnswer in a few words."  # nothing recalled: no text
_WHO_SAID = re.compile(r'Who said "(.*)"\?')
_ABOUT = re.compile(r"What does the text say about (.*)\?")


def path_for(namespace: str, model: str) -> Path:
    """Where the namespace's adapter for the weights `model` is kept: one per namespace,
    so adapters never overwrite each other."""
    return home() / "adapters" / f"params-{namespace}-{model}.safetensors"


def content(memory: Memory) -> str:
    """The namespace's content, named: an adapter trained on other content is stale."""
    digest = hashlib.sha256()
    for passage in memory.passages():
        digest.update(passage.text.encode())
    return digest.hexdigest()[:16]


def forms(question: str) -> list[str]:
    """The question in the wordings it is learned in, its own first."""
    if quote := _WHO_SAID.fullmatch(question):
        said = quote[1]
        return [question, f'Which character says "{said}"?', f'Whose words are "{said}"?']
    if name := _ABOUT.fullmatch(question):
        return [question, f"Who is {name[1]}?", f"Tell me about {name[1]}."]
    return [question]


def messages(question: str) -> list[Message]:
    """How a question is put to the adapter, in training and when asked."""
    return [Message(role="system", content=kv.SYSTEM),
            Message(role="user", content=PROMPT.format(question=question))]


def facts(memory: Memory, engine: Any, count: int = QUESTIONS,
          progress: Callable[[int, int], None] | None = None) -> list[tuple[str, str]]:
    """Question and answer pairs about the namespace, answered by `ask` from its text."""
    asked = reader.questions(memory, count)
    if not asked:
        raise UsageError(f"{memory.namespace} holds no passages to learn facts from")
    return list(zip(asked, anyio.run(_answers, memory.namespace, asked, engine,
                                     progress or (lambda done, total: None)), strict=True))


async def _answers(namespace: str, asked: list[str], engine: Any,
                   progress: Callable[[int, int], None]) -> list[str]:
    from mempipe.agents.ask import Ask

    answers, done = [""] * len(asked), 0
    limiter = anyio.CapacityLimiter(16)

    async def answer(i: int, question: str) -> None:
        nonlocal done
        agent = Ask(question=question, **{"from": namespace}, max_tokens=ANSWER_TOKENS)
        async with limiter:
            answers[i] = " ".join((await agent.pipeline().arun(engine=engine)).split())
        done += 1
        progress(done, len(asked))

    async with anyio.create_task_group() as group:
        for i, question in enumerate(asked):
            group.start_soon(answer, i, question)
    return answers


def train(memory: Memory, engine: Any = None, count: int = QUESTIONS, epochs: int = EPOCHS,
          rank: int = RANK, progress: Callable[[str, int, int], None] | None = None
          ) -> tuple[Path, list[float]]:
    """Train the namespace's adapter on its facts (asked of it first, or kept from an
    earlier run over the same content) and save it; the path and each epoch's loss."""
    from mempipe.engine import get_engine

    engine = kv.engine_for_kv(engine or get_engine())
    path = path_for(memory.namespace, engine.fingerprint)
    made_from = content(memory)
    kept = path.with_suffix(".facts.jsonl")
    pairs = _kept(kept, made_from, count)
    if pairs is None:
        pairs = facts(memory, engine, count, staged(progress, "facts"))
        _keep(kept, made_from, count, pairs)
    examples = [(messages(form), lambda: [], answer) for question, answer in pairs if answer
                for form in forms(question)]
    if not examples:
        raise UsageError(f"the model answered none of {len(pairs)} questions about "
                         f"{memory.namespace} from its text: nothing to train on")
    adapter = engine.new_adapter(rank, {"namespace": memory.namespace, "content": made_from,
                                        "facts": str(len(pairs))})
    losses = engine.fit_adapter(adapter, examples, epochs, LR,
                                progress=staged(progress, "training"),
                                checkpoint=path.with_suffix(".checkpoint"))
    adapter.save(path)
    return path, losses


def load(memory: Memory, engine: Any) -> tuple[Any, bool]:
    """The namespace's adapter for the engine's weights (None when never trained), and
    whether the namespace has changed since it was trained."""
    from mempipe.engine.lora import Adapter

    path = path_for(memory.namespace, engine.fingerprint)
    if not path.is_file():
        return None, False
    adapter = Adapter.load(path)
    return adapter, adapter.about.get("content") != content(memory)


def _kept(path: Path, made_from: str, count: int) -> list[tuple[str, str]] | None:
    """The facts an earlier run asked of the same content, if kept."""
    try:
        lines = path.read_text().splitlines()
        head = json.loads(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if head != {"content": made_from, "questions": count}:
        return None
    return [(row["question"], row["answer"]) for row in map(json.loads, lines[1:])]


def _keep(path: Path, made_from: str, count: int, pairs: list[tuple[str, str]]) -> None:
    rows = [{"content": made_from, "questions": count}]
    rows += [{"question": q, "answer": a} for q, a in pairs]
    write_atomically(path, lambda to: to.write_text("".join(json.dumps(r) + "\n" for r in rows)))
