"""Tier 3: what a namespace holds, trained into a LoRA adapter, so the model answers
questions about it with nothing recalled and nothing read (Memory³'s parameters tier).

Training data comes from memory itself: questions about the namespace's passages (who said
each quote, what the text says about the names it mentions), its most read passages'
first, then who each speaker found is, each asked in a few forms (a fact seen in one
wording is learned poorly); and as many facts of every kind (memory/questions.py), each
read from the passage it was found in. A teacher the caller hands in answers them (`ask`
reading the text, tier 1, its best reader); its answers are kept (memory/taught.py), so a
retrain asks only what was never asked. The adapter names the namespace's content (when
the namespace changes, it is reported stale) and what it was taught (what it can answer
for: `knows`). It is then measured on those facts in other words, against text, and `ask
--tier auto` asks it what it was taught in other words only where it answered them as
well as text (`by_meaning`)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mempipe.config import home
from mempipe.engine.base import Message
from mempipe.errors import UsageError
from mempipe.memory import Memory, kv, reader, taught
from mempipe.memory import questions as facts_of
from mempipe.memory.embed import default_embedder
from mempipe.memory.heat import hot
from mempipe.memory.query import asks_for_someone, phrases
from mempipe.memory.store import now
from mempipe.progress import staged

QUESTIONS, EPOCHS, RANK, LR = 300, 3, 16, 1e-3
MEASURED = 150  # taught facts the adapter is asked in other words, beside text
CONFIDENT = 0.8  # auto takes the adapter's answer this sure of it (bench/params.py)
# auto asks the adapter a question this near in meaning to one it was taught (`nearest`):
# chosen on taught facts alone by bench/tiers.py (`threshold`), see docs/benchmarks.md
SIMILAR = 0.75
PROMPT = "Question: {question}\nAnswer in a few words."  # nothing recalled: no text
SPEAKERS = 40  # who-is facts: the speakers most often found, each named mid-sentence
_WHO_SAID = re.compile(r'Who said "(.*)"\?')
_ABOUT = re.compile(r"What does the text say about (.*)\?")
_WHO_IS = re.compile(r"Who is (.*)\?")


def path_for(namespace: str, model: str) -> Path:
    """Where the namespace's adapter for the weights `model` is kept: one per namespace,
    so adapters never overwrite each other."""
    return home() / "adapters" / f"params-{namespace}-{model}.safetensors"


def forms(question: str) -> list[str]:
    """The question in the wordings it is learned in, its own first."""
    if quote := _WHO_SAID.fullmatch(question):
        said = quote[1]
        return [question, f'Which character says "{said}"?', f'Whose words are "{said}"?']
    if name := _ABOUT.fullmatch(question):
        return [question, f"Tell me about {name[1]}.", f"What do we learn about {name[1]}?"]
    if name := _WHO_IS.fullmatch(question):
        return [question, f"Who's {name[1]}?", f"Tell me who {name[1]} is."]
    return [question]


def knows(adapter: Any, question: str) -> bool:
    """Whether `adapter` was taught `question` as asked: who said what it quotes, each
    quote within one it was taught; or else the question itself in one of its forms (case,
    spacing and punctuation aside). (What it was taught in other words: `nearest`.)"""
    lessons = adapter.about.get("taught", "").splitlines()
    if quoted := phrases(question):
        said = [_key(found[1]) for asked in lessons if (found := _WHO_SAID.fullmatch(asked))]
        return asks_for_someone(question) and all(any(_key(part) in quote for quote in said)
                                                  for part in quoted)
    return _key(question) in {_key(form) for asked in lessons for form in forms(asked)}


def nearest(adapter: Any, question: str) -> tuple[float, str]:
    """The question `adapter` was taught (in any of its forms) nearest `question` in
    meaning, and how near: the cosine of their sentence embeddings (memory/embed.py);
    (0, "") where it was taught none."""
    taught_forms, vectors = _taught_vectors(adapter.about.get("taught", ""))
    if not taught_forms:
        return 0.0, ""
    likeness = vectors @ default_embedder().embed([question])[0]
    return float(likeness.max()), taught_forms[int(likeness.argmax())]


@functools.lru_cache(maxsize=8)
def _taught_vectors(lessons: str) -> tuple[list[str], Any]:
    """The taught questions in every form, and their embeddings: computed once per
    adapter a process reads."""
    taught_forms = [form for asked in lessons.splitlines() if asked for form in forms(asked)]
    return taught_forms, default_embedder().embed(taught_forms)


def _key(question: str) -> str:
    return " ".join(re.findall(r"[\w'’]+", question.lower()))


def messages(question: str) -> list[Message]:
    """How a question is put to the adapter, in training and when asked."""
    return [Message(role="system", content=kv.SYSTEM),
            Message(role="user", content=PROMPT.format(question=question))]


def train(memory: Memory, engine: Any, teacher: taught.Teacher, count: int = QUESTIONS,
          epochs: int = EPOCHS, rank: int = RANK, steps: int | None = None,
          progress: Callable[[str, int, int], None] | None = None,
          questions: list[str] | None = None, pages: Mapping[str, str] | None = None,
          student: taught.Teacher | None = None,
          measured: Sequence[facts_of.Fact] | None = None) -> tuple[Path, list[float]]:
    """Train the namespace's adapter on `count` questions: those of its most read passages
    (memory/heat.py), then half its facts of every kind and half the templates, then who
    each speaker they found is (or on the `questions` given, and those alone), for
    `epochs` or at most `steps` steps, and save it; the path and each epoch's loss.
    `teacher` answers each question (memory/taught.py: what it answered before, of the
    same content, is not asked again), reading the page `pages` gives it where there is
    one (a fact's passage), else what it recalls. With `student` (the adapter's answer),
    it is then measured on the `measured` facts' other wording (by default the facts it
    learned, up to `MEASURED`), against text."""
    engine = kv.engine_for_kv(engine)
    path = path_for(memory.namespace, engine.fingerprint)
    made_from, first = taught.content(memory), hot(memory)
    asked = list(questions or [])
    if questions is None:
        templates = reader.questions(memory, count, first=first)
        read_most = {q for passage in first for some in reader.asked_of(passage.text)
                     for q in some}  # never displaced by facts
        generated = facts_of.sample(facts_of.facts(memory.passages()),
                                    min(count // 2, max(0, count - len(read_most))))
        asked = templates[:count - len(generated)] + [f.asked for f in generated]
        texts = {passage.id: passage.text for passage in memory.passages()}
        pages = {f.asked: texts[f.passage] for f in generated}
        measured = generated[:MEASURED] if measured is None else measured
    if not asked:
        raise UsageError(f"{memory.namespace} holds no passages to learn facts from")
    known = taught.answers(memory, engine.fingerprint, teacher, asked,
                           staged(progress, "teacher"), pages)
    if questions is None:
        who = [f"Who is {name}?" for name in speakers(memory, asked, known)]
        known |= taught.answers(memory, engine.fingerprint, teacher, who,
                                staged(progress, "teacher"))
        asked += [q for q in who if q not in asked]
    examples = [(messages(form), lambda: [], known[q]) for q in asked if known[q]
                for form in forms(q)]
    if not examples:
        raise UsageError(f"the model answered none of {len(asked)} questions about "
                         f"{memory.namespace} from its text: nothing to train on")
    learned = set(asked)  # asked of the text: an empty answer had nothing to teach
    covered = [str(p.id) for p in first
               if all(set(some) <= learned for some in reader.asked_of(p.text))]
    adapter = engine.new_adapter(rank, {"namespace": memory.namespace, "content": made_from,
                                        "facts": str(len(asked)), "trained": now(),
                                        "passages": ",".join(covered),
                                        "taught": "\n".join(q for q in asked if known[q])})
    losses = engine.fit_adapter(adapter, examples, epochs, LR,
                                progress=staged(progress, "training"),
                                checkpoint=path.with_suffix(".checkpoint"), steps=steps)
    adapter.save(path)
    if student is not None and (measuring := [f for f in measured or [] if known.get(f.asked)]):
        taught.measure(path, memory, engine.fingerprint, teacher, student, "params",
                       measuring, [f.reworded for f in measuring], staged(progress, "measuring"))
    return path, losses


def by_meaning(adapter: Any, memory: Memory) -> bool:
    """Whether `adapter` was measured on `memory` as it is now answering what it was
    taught in other words at most `taught.CLOSE` below text: auto asks it questions like
    (`nearest`), not only as (`knows`), those it was taught only then."""
    return taught.as_good(adapter.about, memory, "params")


def speakers(memory: Memory, asked: list[str], known: dict[str, str]) -> list[str]:
    """Who the text tier found saying the quotes asked, most often first, if the namespace
    names them mid-sentence (a name, not "Yes" or a sentence), each as the text says it
    ("the Caterpillar"), the way a reader will ask who they are."""
    found = Counter(known.get(q, "").rstrip(".") for q in asked if _WHO_SAID.fullmatch(q))
    texts = [passage.text for passage in memory.passages()]
    named = {name for text in texts for name in reader.named(text)}
    return [as_said(name, texts) for name, _ in found.most_common() if name in named
            ][:SPEAKERS]


def as_said(name: str, texts: list[str]) -> str:
    """`name` with "the" before it where most of its mentions in `texts` have one."""
    mentions = re.compile(rf"\b((?i:the)\s+)?{re.escape(name)}\b")
    found = [m[1] is not None for text in texts for m in mentions.finditer(text)]
    return f"the {name}" if 2 * sum(found) > len(found) else name


def load(memory: Memory, engine: Any) -> tuple[Any, bool]:
    """The namespace's adapter for the engine's weights (None when never trained), and
    whether the namespace has changed since it was trained."""
    from mempipe.engine.lora import Adapter  # torch: loaded when an adapter is first read

    path = path_for(memory.namespace, engine.fingerprint)
    if not path.is_file():
        return None, False
    adapter = Adapter.cached(path)
    return adapter, adapter.about.get("content") != taught.content(memory)


def learned(adapter: Any) -> set[int]:
    """The passages whose every fact `adapter` was trained on (their ids): those placement
    counts as in the adapter (what `ask` trusts it with is `knows`)."""
    return {int(i) for i in adapter.about.get("passages", "").split(",") if i}


def describe(memory: Memory) -> dict[str, Any]:
    """What `memory stats` shows of tier 3: the namespace's adapters (one per weights
    trained for), their bytes, facts, the latest training and whether it is stale."""
    from safetensors import safe_open

    found = []
    for path in sorted((home() / "adapters").glob(f"params-{memory.namespace}-*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            about = f.metadata() or {}
        if about.get("namespace") == memory.namespace:
            found.append((about, path.stat().st_size))
    latest = max(found, key=lambda pair: pair[0].get("trained", ""), default=({}, 0))[0]
    measured = taught.measurement(latest, memory) or {}
    return {"adapters": len(found), "adapter_bytes": sum(size for _, size in found),
            "adapter_facts": int(latest.get("facts", 0)),
            "adapter_trained": latest.get("trained"),
            "adapter_stale": bool(latest) and latest.get("content") != taught.content(memory),
            "adapter_measured": measured.get("n"),
            "adapter_params_accuracy": measured.get("params"),
            "adapter_text_accuracy": measured.get("text")}
