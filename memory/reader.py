"""The memory reader: a LoRA adapter that teaches the model to read key/value memories (tier
2) as well as it reads their text (Memory³'s trained reader).

Memories are computed one passage at a time, so a recalled passage never attended to the
one beside it; the model, never trained on such a cache, answers worse from them than from
the same passages as text. The reader is distilled from the model itself: questions about
a namespace's passages are answered by a teacher the caller hands in (`ask --tier text`,
the best reader; its answers shared with tier 3's training, memory/taught.py); the adapter
learns to write those answers from the recalled passages' stored memories. It belongs to
the weights, not to a namespace: trained once on any text, it serves every namespace, and
`ask --tier kv` reads with it when it exists.

How well it reads depends on the training run, so each reader is measured where it was
trained: on held-back questions about the namespace (facts of passages it never learned
from, memory/questions.py), answered from memories and from text, paired. The result is
kept with the reader, and `ask --tier auto` reads a namespace's memories only where it
shows the reader within `taught.CLOSE` of text (`reads_well`)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mempipe.chunking import TITLES
from mempipe.config import home
from mempipe.errors import UsageError
from mempipe.memory import Memory, Passage, kv, taught
from mempipe.memory import questions as facts_of
from mempipe.memory.store import uncounted, with_neighbours
from mempipe.progress import staged

QUESTIONS, EPOCHS, RANK, LR = 300, 2, 16, 5e-4  # 12 minutes on a 2-core CPU, see bench
MEASURED = 300  # held-back questions a reader is measured on, each asked of both tiers
KS = (3, 5)  # recalled passages per question, as ask reads them
_QUOTE = re.compile(r'["“]((?:[^"”\n]|\n(?!\n)){25,140}?)[,.!?]?["”]')  # one paragraph
_NAME = re.compile(rf"(?<=[a-z,;] )(?:{TITLES}\.?\s+)?[A-Z][a-z]{{2,}}(?: [A-Z][a-z]{{2,}})?")


def path_for(model: str) -> Path:
    """Where a reader trained here for the weights `model` is kept."""
    return home() / "adapters" / f"reader-{model}.safetensors"


def load(engine: Any) -> Any:
    """The reader trained for the engine's weights, or None when there is none."""
    from mempipe.engine.lora import Adapter  # torch: loaded when an adapter is first read

    path = path_for(engine.fingerprint)
    return Adapter.cached(path) if path.is_file() else None


def questions(memory: Memory, count: int, seed: int = 0,
              first: Sequence[Passage] = ()) -> list[str]:
    """Questions about the namespace's passages: who said each quoted line, then what the
    text says about names it mentions mid-sentence; a sample of `count`. The questions of
    the passages in `first` come before the sample, in their order (who said what first)."""
    asked = [asked_of(passage.text) for passage in first]
    chosen = list(dict.fromkeys(q for said, _ in asked for q in said))  # quotes first
    chosen = list(dict.fromkeys(chosen + [q for _, about in asked for q in about]))[:count]
    quoted, named = set(), set()
    for passage in memory.passages():
        said, about = asked_of(passage.text)
        quoted.update(said)
        named.update(about)
    quoted, named = sorted(quoted - set(chosen)), sorted(named - set(chosen))
    chooser = random.Random(seed)
    chosen += chooser.sample(quoted, min(count - len(chosen), len(quoted)))
    return chosen + chooser.sample(named, min(count - len(chosen), len(named)))


def asked_of(text: str) -> tuple[list[str], list[str]]:
    """The questions a passage's text answers: who said each quote; what it says about
    each name."""
    said = list(dict.fromkeys(f'Who said "{" ".join(q.split())}"?'
                              for q in _QUOTE.findall(text)))  # as a line wrapped in print
    about = [f"What does the text say about {name}?" for name in named(text)]
    return said, about


def named(text: str) -> list[str]:
    """The names a text mentions mid-sentence (where a capital means a name), with their
    title: Mrs. Bennet is not Mr. Bennet."""
    return list(dict.fromkeys(" ".join(name.split()) for name in _NAME.findall(text)))


def train(memory: Memory, engine: Any, teacher: taught.Teacher, count: int = QUESTIONS,
          epochs: int = EPOCHS, rank: int = RANK,
          progress: Callable[[str, int, int], None] | None = None,
          student: taught.Teacher | None = None, measured: int = MEASURED
          ) -> tuple[Path, list[float]]:
    """Train the reader on `memory`'s passages (their memories computed first where
    missing) and save it for the engine's weights; the path and each epoch's mean loss.
    `teacher` answers each question (memory/taught.py: what it answered before, of the
    same content, is not asked again); a question it leaves unanswered teaches nothing.
    With `student` (the answer read from memories), the saved reader is then measured on
    `measured` held-back questions (`measure`)."""
    engine = kv.engine_for_kv(engine)
    asked = questions(memory, count)
    if not asked:
        raise UsageError(f"{memory.namespace} holds no passages to train a reader on")
    memory.encode_kv(engine, progress=staged(progress, "memories"))
    plans = []
    with uncounted():
        for i, question in enumerate(asked):
            found = [(memory.store, p) for p in memory.recall(question, KS[i % len(KS)])]
            plans.append((question, [p for _, group in with_neighbours(found) for p in group]))
    model = engine.fingerprint
    path = path_for(model)
    known = taught.answers(memory, model, teacher, [question for question, _ in plans],
                           staged(progress, "teacher"))
    blobs, _ = memory.store.kv(list({p.id for _, passages in plans for p in passages}))
    examples = [(kv.framing(question), _loader([blobs[p.id] for p in passages], model),
                 known[question]) for question, passages in plans
                if known[question] and all(p.id in blobs for p in passages)]
    if not examples:
        raise UsageError(f"the teacher answered none of {len(plans)} questions about "
                         f"{memory.namespace}: nothing to train a reader on")
    adapter = engine.new_adapter(rank, {"trained_on": memory.namespace,
                                        "questions": str(len(examples))})
    losses = engine.fit_adapter(adapter, examples, epochs, LR,
                                progress=staged(progress, "training"),
                                checkpoint=path.with_suffix(".checkpoint"))
    adapter.save(path)
    if student is not None and measured:
        learned = {p.id for _, passages in plans for p in passages}
        measure(memory, engine, teacher, student, learned, measured,
                staged(progress, "measuring"))
    return path, losses


def measure(memory: Memory, engine: Any, teacher: taught.Teacher, student: taught.Teacher,
            learned: set[int], count: int = MEASURED,
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any] | None:
    """Measure the engine's reader on up to `count` questions about `memory`'s facts
    whose passages are not in `learned` (every kind as evenly as they allow): the share
    `student` (memories, with the reader) and `teacher` (text) answer, on the same
    questions (taught.measure); None where no such fact is found."""
    held = facts_of.sample([f for f in facts_of.facts(memory.passages())
                            if f.passage not in learned], count)
    if not held:
        return None
    return taught.measure(path_for(engine.fingerprint), memory, engine.fingerprint, teacher,
                          student, "kv", held, [f.asked for f in held], progress)


def reads_well(adapter: Any, memory: Memory) -> bool:
    """Whether `adapter` was measured on `memory` as it is now, reading its memories at
    most `taught.CLOSE` below its text."""
    return taught.as_good(adapter.about, memory, "kv")


def _loader(blobs: list[bytes], model: str) -> Callable[[], list[Any]]:
    """Loads the memories when called: loaded, an example's take tens of MB."""
    return lambda: [kv.load(blob, model) for blob in blobs]


def describe(memory: Memory) -> dict[str, Any]:
    """What `memory stats` shows of the memory reader's measurement on this namespace (a
    reader, of any weights, measured on it as it is now): its held-back questions, and
    the share answered from memories and from text; None where none was."""
    from safetensors import safe_open

    found = []
    for path in sorted((home() / "adapters").glob("reader-*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            if measured := taught.measurement(f.metadata() or {}, memory):
                found.append(measured)
    latest = found[-1] if found else {}
    return {"reader_measured": latest.get("n"), "reader_kv_accuracy": latest.get("kv"),
            "reader_text_accuracy": latest.get("text")}
