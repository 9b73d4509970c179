"""Placement on the tiny random model: heat ranks what was read, the hottest passages get
memories within the budget, memories over it are dropped coldest first, and recalled
passages not yet in the adapter make the plan train one, hot passages' facts first."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mempipe import Memory
from mempipe.agents.ask import teacher
from mempipe.memory import heat, kv, params, placement, reader, taught
from mempipe.memory.store import Passage
from tests.conftest import mempipe

CHAPTER = ('"I shall sit here on the bank all the afternoon," said {name} to the {other}. '
           'The {other} looked at {name} and said nothing for a long while after that. ')


def remembered(name: str = "books") -> Memory:
    memory = Memory(name)
    for who, other in [("Alice", "Hatter"), ("Dormouse", "Queen"), ("Gryphon", "Turtle"),
                       ("Duchess", "Cook")]:
        memory.remember(CHAPTER.format(name=who, other=other) * 3, source=f"{who}.txt")
    return memory


def test_heat_is_recalls_halved_every_half_life() -> None:
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    week_ago = (now - dt.timedelta(days=heat.HALF_LIFE_DAYS)).isoformat()
    passage = Passage(id=1, namespace="n", source="s", span=(0, 1), text="t", episode=0,
                      created=week_ago, recalls=4, last_recall=week_ago)
    assert heat.heat(passage, now) == 2.0
    assert heat.heat(passage.model_copy(update={"recalls": 0}), now) == 0.0


def test_the_plan_gives_hot_passages_memories_within_the_budget(engine) -> None:
    memory = remembered()
    for _ in range(3):
        memory.recall("Dormouse Queen bank afternoon", k=1)
    memory.recall("Gryphon Turtle", k=1)
    hot = heat.hot(memory)
    assert [p.source for p in hot] == ["Dormouse.txt", "Gryphon.txt"]
    assert hot[0].recalls == 3
    per_passage = max(kv.size(engine.model.config, kv.DEFAULT, n)
                      for n in engine.count_tokens([p.text for p in hot]))
    tight = placement.plan(memory, engine, budget=per_passage)
    assert tight.promote == [hot[0].id] and tight.demote == []  # only the hottest fits
    assert tight.adapter == "none" and tight.train == [p.id for p in hot]
    placement.apply(memory, engine, tight, teacher("books", engine), steps=2, count=20,
                    rank=2, epochs=1)
    held = memory.store.kv_held(["books"])
    assert list(held) == [hot[0].id]
    assert 0.95 * per_passage <= held[hot[0].id][0] <= per_passage  # estimated well
    adapter, stale = params.load(memory, engine)
    assert not stale and adapter.about["passages"].split(",")[0] == str(hot[0].id)
    again = placement.plan(memory, engine, budget=per_passage)
    assert again.promote == [] and again.train == [] and again.adapter == "current"
    memory.encode_kv(engine)  # every passage gets a memory: over budget now
    over = placement.plan(memory, engine, budget=per_passage)
    assert over.demote == sorted(i for i in memory.store.kv_held(["books"]) if i != hot[0].id)
    placement.apply(memory, engine, over, teacher("books", engine))
    assert list(memory.store.kv_held(["books"])) == [hot[0].id]
    assert len(memory.passages()) == 8  # their text stays


def test_training_asks_the_hot_passages_facts_first_and_keeps_every_answer(engine) -> None:
    memory = remembered()
    memory.recall("Duchess Cook", k=1)
    duchess = heat.hot(memory)[0]
    said, about = reader.asked_of(duchess.text)
    asked = reader.questions(memory, 3, first=[duchess])
    assert asked == (said + about)[:3]
    stages = []
    _, losses = params.train(memory, engine, teacher("books", engine), count=3, epochs=1,
                             rank=2, steps=2, progress=lambda stage, done, total:
                             stages.append((stage, done, total)))
    assert ("training", 2, 2) in stages and len(losses) == 1
    facts = taught.path_for("books", engine.fingerprint).read_text().splitlines()
    kept = [json.loads(line)["question"] for line in facts[1:]]
    assert kept[:3] == asked and all(q.startswith("Who is ") for q in kept[3:])  # speakers
    stages.clear()
    params.train(memory, engine, teacher("books", engine), count=5, epochs=1, rank=2, steps=1,
                 progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert ("teacher", 2, 2) in stages  # only the two questions not asked before


@pytest.mark.slow
def test_place_dry_run_prints_the_plan_and_changes_nothing(tiny_model) -> None:
    env = {"MEMPIPE_MODEL": str(tiny_model)}
    remembered()
    Memory("books").recall("Alice Hatter", k=1)
    planned = mempipe("memory", "place", "books", "--dry-run", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    shown = json.loads(planned.stdout)
    assert len(shown["promote"]) == 1 and shown["adapter"] == "none" and len(shown["train"]) == 1
    assert Memory("books").store.kv_held(["books"]) == {}
    assert not list(params.path_for("x", "y").parent.glob("params-books-*"))
    bad = mempipe("memory", "place", "books", "--kv-budget", "lots", env=env)
    assert bad.returncode == 2 and "'lots' is not a size" in bad.stderr
    stats = json.loads(mempipe("memory", "stats", "books", "--json").stdout)
    assert stats["adapters"] == 0 and stats["adapter_trained"] is None
