"""What key/value memories lack against text: the same recalled passages, their keys and
values computed three ways and injected (nothing prefilled), beside the text they come from.

    python bench/kv_context.py --json [--book PATH --qa PATH] [--k 3 5] [--limit N]

Tier 2 computes every passage on its own (Memory³), so a recalled passage never attended
to the others; this measures how much of the gap to text that costs, and where it sits.
Arms, for each who-said question and the passages `ask --from` recalls (best k, each
widened by its neighbours into a run): `text`, the passages prefilled as tier 1 reads
them; `joint`, all of them computed as one text, then injected (what memories would read
like if each had seen the others: the ceiling of any stored memory); `runs`, each run of
neighbours computed as one text, runs apart (attention across a quote's seam); `alone`,
each passage on its own, as tier 2 stores them. Every arm keeps all tokens and layers in
fp16, so only what each memory attended to differs. Per arm: accuracy of the written
answer (greedy, 10 tokens) at each k, and `kept`: of the questions text answers right,
the share this arm answers right too."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import log, machine  # noqa: E402
from bench.whosaid import book_parser, correct, isolated_home, parse_sets  # noqa: E402

ARMS = ["text", "joint", "runs", "alone"]
EXACT = "fp16-128of128-all"


def run_book(book: Path, qa: Path, ks: list[int], limit: int | None) -> dict:
    import anyio

    from mempipe import Item, Memory
    from mempipe.engine import GenerationRequest, get_engine
    from mempipe.memory import kv
    from mempipe.memory.store import with_neighbours

    engine = get_engine()
    model, setting = engine.fingerprint, kv.Compression.parse(EXACT)
    text = book.read_text()
    memory = Memory(book.stem[:60])
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    plans = []  # (question, gold, k, runs of neighbouring passages' texts)
    for q in questions:
        for k in ks:
            found = [(memory.store, p) for p in memory.recall(q["question"], k)]
            plans.append((q["question"], q["answer"], k,
                          [[p.text for p in group] for _, group in with_neighbours(found)]))
    computed: dict[str, object] = {}  # a text's memory, computed once for every arm

    def memories(texts: list[str]) -> list[object]:
        missing = list(dict.fromkeys(t for t in texts if t not in computed))
        for t, state in zip(missing, engine.read_passages(kv.framing(), missing)):
            computed[t] = kv.load(kv.compress(state, setting, model), model)
        return [computed[t] for t in texts]

    def read_as(arm: str, runs: list[list[str]]) -> list[object]:
        if arm == "joint":
            return memories(["".join(p for run in runs for p in run)])
        if arm == "runs":
            return memories(["".join(run) for run in runs])
        return memories([p for run in runs for p in run])

    async def written(request: GenerationRequest) -> str:
        return "".join([piece async for piece in engine.stream(request)])

    hits: dict[str, dict[int, list[bool]]] = {arm: {k: [] for k in ks} for arm in ARMS}
    for arm in ARMS:
        for question, gold, k, runs in plans:
            if arm == "text":
                passages = "".join(p for run in runs for p in run)
                request = GenerationRequest(messages=kv.framing_as_text(question, passages),
                                            max_tokens=10, budget=8192, agent="bench")
            else:
                request = GenerationRequest(messages=kv.framing(question),
                                            memories=read_as(arm, runs), max_tokens=10,
                                            budget=8192, agent="bench")
            hits[arm][k].append(correct(anyio.run(written, request), gold))
        computed.clear()
        log(f"{book.name}: {arm}: " + ", ".join(
            f"k={k} {sum(h) / len(h):.1%}" for k, h in hits[arm].items()))
    right = [(k, i) for k in ks for i, hit in enumerate(hits["text"][k]) if hit]
    return {"questions": len(questions), "arms": [
        {"name": arm,
         "accuracy_by_k": {str(k): round(sum(h) / len(h), 3) for k, h in hits[arm].items()},
         "kept": round(sum(hits[arm][k][i] for k, i in right) / max(1, len(right)), 3)}
        for arm in ARMS]}


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5], help="passages recalled")
    args, pairs = parse_sets(parser)
    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = {book.stem: run_book(book, qa, sorted(args.k), args.limit) for book, qa in pairs}
    from mempipe.engine import get_engine

    engine = get_engine()
    result = {"benchmark": "kv_context",
              "machine": machine(),
              "model": engine.name, "dtype": str(engine.model.dtype), "k": sorted(args.k),
              "books": books}
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
