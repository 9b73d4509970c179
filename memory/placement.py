"""Placement: which tier holds each passage of a namespace, decided by how it is read
(Memory³'s hierarchy: text, then key/value memories, then parameters; each costs more to
write and less to read, so what is read often earns the cost of moving up).

A passage's heat is its recall count (tier 1 counts every recall), halved for every
`HALF_LIFE_DAYS` since it was last recalled (memory/heat.py). The hottest passages get
key/value memories while they fit the namespace's byte budget; memories beyond the budget
are dropped, coldest first (their text stays). Every recalled passage's facts go into the
namespace's next adapter (memory/params.py); the plan trains one when a recalled passage
is not yet in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mempipe.memory import Memory, kv, params, reader, taught
from mempipe.memory.heat import hot
from mempipe.progress import staged

KV_BUDGET = 64 * 2**20  # bytes of key/value memories per namespace


@dataclass
class Plan:
    """What `apply` will do to one namespace, and the state it leaves."""

    namespace: str
    budget: int
    setting: str
    passages: int
    recalled: int
    promote: list[int] = field(default_factory=list)  # passages given memories
    demote: list[int] = field(default_factory=list)   # passages whose memories go
    kv_bytes_before: int = 0
    kv_bytes_after: int = 0
    adapter: str = "none"  # none | stale | current
    train: list[int] = field(default_factory=list)    # recalled passages not in it

    def lines(self) -> list[str]:
        mb = 2**20
        adapter = (f"train on {len(self.train)} recalled passages not in the adapter "
                   f"({self.adapter})" if self.train else f"keep ({self.adapter})")
        return [f"{self.namespace}: {self.passages} passages, {self.recalled} recalled",
                f"kv ({self.setting}): promote {len(self.promote)}, demote "
                f"{len(self.demote)}; {self.kv_bytes_before / mb:.1f} MB -> "
                f"{self.kv_bytes_after / mb:.1f} MB of {self.budget / mb:.1f} MB",
                f"adapter: {adapter}"]


def plan(memory: Memory, engine: Any, budget: int = KV_BUDGET,
         setting: kv.Compression = kv.DEFAULT) -> Plan:
    """Where each passage should be, from how it has been read: see the module."""
    model = engine.fingerprint
    passages = memory.passages()
    held = memory.store.kv_held([memory.namespace])
    mine = {i: size for i, (size, m, s) in held.items() if m == model and s == setting.name}
    ranked = hot(memory)
    recalled = {p.id for p in ranked}
    cold = sorted((p for p in passages if p.id in mine and p.id not in recalled),
                  key=lambda p: -p.id)  # the latest remembered stay longest
    unheld = [p for p in ranked if p.id not in mine]
    sizes = dict(mine) | {p.id: kv.size(engine.model.config, setting, n) for p, n in
                          zip(unheld, engine.count_tokens([p.text for p in unheld]))}
    keep, used = set(), 0
    for passage in ranked + cold:
        if used + sizes[passage.id] <= budget:
            keep.add(passage.id)
            used += sizes[passage.id]
    result = Plan(memory.namespace, budget, setting.name, len(passages), len(ranked),
                  promote=[p.id for p in ranked if p.id in keep and p.id not in mine],
                  demote=sorted(i for i in held if i not in keep),
                  kv_bytes_before=sum(size for size, _, _ in held.values()),
                  kv_bytes_after=used)
    adapter, stale = params.load(memory, engine)
    result.adapter = "none" if adapter is None else "stale" if stale else "current"
    covered = set() if adapter is None or stale else params.learned(adapter)
    result.train = [p.id for p in ranked
                    if p.id not in covered and any(reader.asked_of(p.text))]
    return result


def apply(memory: Memory, engine: Any, chosen: Plan, teacher: taught.Teacher,
          progress: Any = None, **training: Any) -> None:
    """Carry out `chosen`: drop the demoted memories, compute the promoted ones, and train
    the adapter when the plan says so (`teacher` and `training` as for params.train)."""
    memory.store.drop_kv(chosen.demote)
    memory.encode_kv(engine, chosen.setting, staged(progress, "memories"),
                     only=set(chosen.promote))
    if chosen.train:
        params.train(memory, engine, teacher, progress=progress, **training)
