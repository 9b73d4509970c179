"""The memory tiers on questions they were not taught. Per book, in one run and one fresh
mempipe home:

1. The book is remembered; `memory/questions.py` finds the facts its sentences state, of
   every kind, and splits them by passage into taught and held-back halves (each seed its
   own split); N of each are drawn, every kind as evenly as the facts allow.
2. Sets: `taught` (the taught facts, asked as training asks them), `reworded` (the same
   facts as a blank to fill with their kind), `held_back` (facts of passages never
   taught), and the bundled `general` and `whosaid` sets where the book has them.
3. Arms: `text` (`ask --tier text`); `cache`, the honest floor of a trained tier: the
   answer training was given for a question it asked, word for word, else nothing;
   `params` (`ask --tier params`: the namespace's adapter, trained on the taught questions
   with the text tier as teacher, reading the passage each fact was found in, or with
   `--teacher recall` recalling from the whole namespace); `kv` (`ask --tier kv`: the
   memories read with the memory reader, trained once a run on the namespace's templates
   and measured on its held-back facts, memory/reader.py); `auto` (`ask --tier auto`: the
   adapter where it is sure and the question is as it was taught, or like one where the
   adapter was measured answering other wordings as well as text; memories where the
   reader was measured reading as well as text; else text).
4. Routing: the adapter is taught `--measure` facts beyond the set, and measured on their
   other wording against text (memory/params.py); whether auto asks it by meaning follows.
   `params.SIMILAR`, the likeness to a taught question above which it does, is chosen
   again on each seed's taught facts alone (`threshold`) and reported beside the one used.

    python bench/tiers.py --json [--book PATH] [--n 300] [--seeds 1] [--arms text,cache,params]
                          [--epochs 3] [--steps N] [--limit N] [--teacher page|recall]
                          [--measure 150] [--reader-questions 300]

Accuracy is the share answered (a fact: its answering words in the reply, most of them
for a reason or a way; the bundled sets as bench/general.py and bench/whosaid.py judge);
with more than one seed, the mean and its standard deviation over seeds. Seconds are the
median per answer. The reader is trained once a run, not once a seed: its training takes
15-50 minutes on a 2-core CPU."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench import general, whosaid  # noqa: E402
from bench.report import log, machine  # noqa: E402

DATA = ROOT / "examples" / "data"
ARMS = ("text", "cache", "params", "kv", "auto")
Judge = Callable[[str], bool]


def bundled(book: Path) -> dict[str, list[tuple[str, Judge]]]:
    """The book's bundled general and who-said questions, each with its judge."""
    sets: dict[str, list[tuple[str, Judge]]] = {}
    for kind, judged in (("general", lambda q: lambda a: general.correct(a, q["answers"])),
                         ("whosaid", lambda q: lambda a: whosaid.correct(a, q["answer"]))):
        path = DATA / "qa" / f"{book.stem}.{kind}.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            sets[kind] = [(q["question"], judged(q)) for q in rows]
    return sets


def threshold(teach: list, seed: int, embed: Callable, most_unlike: float = 0.05) -> dict:
    """`params.SIMILAR` chosen on taught facts alone: half of them (by passage) stand for
    what an adapter was taught; their other wording should come at least this close to
    it, the other half's questions (facts never taught) not. The threshold is the lowest
    that lets at most `most_unlike` of those through."""
    from mempipe.memory import questions

    known, unknown = questions.split(teach, 0.5, seed + 1)
    taught_vectors = embed([f.asked for f in known])
    like = (embed([f.reworded for f in known]) @ taught_vectors.T).max(axis=1)
    unlike = np.sort((embed([f.asked for f in unknown]) @ taught_vectors.T).max(axis=1))
    chosen = float(unlike[min(len(unlike) - 1, int((1 - most_unlike) * len(unlike)))])
    return {"threshold": round(chosen, 3), "reworded_through": round(float((like >= chosen)
                                                                           .mean()), 3),
            "untaught_through": round(float((unlike >= chosen).mean()), 3),
            "n": [len(known), len(unknown)]}


def asked(question: str, namespace: str, tier: str, engine: object) -> tuple[str, float]:
    """`ask`'s reply ("" where it refused) and its seconds."""
    from mempipe import ask
    from mempipe.errors import MempipeError

    started = time.perf_counter()
    try:
        reply = " ".join(i.text for i in ask(question, from_=namespace, tier=tier)
                         .pipeline().items(engine=engine))
    except MempipeError:
        reply = ""
    return reply, time.perf_counter() - started


def run_book(book: Path, n: int, seeds: list[int], arms: list[str], epochs: int,
             steps: int | None, limit: int | None, teaching: str, measure: int,
             reader_questions: int) -> dict:
    from mempipe import Item, Memory
    from mempipe.agents.ask import teacher
    from mempipe.engine import get_engine
    from mempipe.memory import params, questions, reader, taught

    engine = get_engine()
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]
    memory = Memory(namespace)
    text = book.read_text()
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))
    passages = memory.passages()
    pages = {p.id: p.text for p in passages}
    found = questions.facts(passages)
    log(f"{book.name}: {len(found)} facts, {dict(Counter(f.kind for f in found))}")
    fixed = {name: rows[:limit] if limit else rows for name, rows in bundled(book).items()}
    text_replies: dict[str, tuple[str, float]] = {}  # text reads the same for every seed
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, dict[str, list[float]]] = {}
    training, routing, reading = [], [], {}

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            log(f"{stage} {done}/{total}")

    if "kv" in arms or "auto" in arms:
        started = time.perf_counter()
        _, losses = reader.train(memory, engine, teacher(namespace, engine),
                                 count=reader_questions, student=teacher(namespace, engine, "kv"),
                                 measured=n, progress=progress)
        reading = {"seconds": round(time.perf_counter() - started, 1),
                   "losses": [round(x, 4) for x in losses],
                   "measured": taught.measurement(reader.load(engine).about, memory)}
    for seed in seeds:
        teach, held = questions.split(found, 0.5, seed)
        teach, held = questions.sample(teach, n + measure, seed), questions.sample(held, n, seed)
        teach, measured = teach[:n], teach[n:]  # the measured facts are taught, never scored
        routing.append({"seed": seed, "used": params.SIMILAR,
                        **threshold(teach, seed, memory.store.embedder.embed)})
        sets: dict[str, list[tuple[str, Judge]]] = {
            "taught": [(f.asked, lambda a, f=f: questions.answered(a, f)) for f in teach],
            "reworded": [(f.reworded, lambda a, f=f: questions.answered(a, f)) for f in teach],
            "held_back": [(f.asked, lambda a, f=f: questions.answered(a, f)) for f in held],
            **fixed}
        given: dict[str, str] = {}  # what training was given, question by question
        if "params" in arms or "auto" in arms or "cache" in arms:
            lessons = [f.asked for f in teach + measured]
            page_of = {f.asked: pages[f.passage] for f in teach + measured} \
                if teaching == "page" else None
            started = time.perf_counter()
            _, losses = params.train(
                memory, engine, teacher(namespace, engine), epochs=epochs, steps=steps,
                questions=lessons, pages=page_of, student=teacher(namespace, engine, "params"),
                measured=measured, progress=progress)
            adapter = params.load(memory, engine)[0]
            training.append({"seed": seed, "seconds": round(time.perf_counter() - started, 1),
                             "losses": [round(x, 4) for x in losses],
                             "measured": taught.measurement(adapter.about, memory),
                             "by_meaning": params.by_meaning(adapter, memory)})
            given = taught.answers(memory, engine.fingerprint, teacher(namespace, engine),
                                   lessons, pages=page_of)  # all kept: nothing is asked
        for name, rows in sets.items():
            for arm in arms:
                right, took = [], []
                for question, judge in rows:
                    if arm == "cache":
                        reply, spent = given.get(question, ""), 0.0
                    elif arm == "text":
                        if question not in text_replies:
                            text_replies[question] = asked(question, namespace, "text", engine)
                        reply, spent = text_replies[question]
                    else:
                        reply, spent = asked(question, namespace, arm, engine)
                    right.append(judge(reply))
                    took.append(spent)
                scores.setdefault(name, {}).setdefault(arm, []).append(sum(right) / len(right))
                seconds.setdefault(name, {}).setdefault(arm, []).append(statistics.median(took))
                log(f"seed {seed} {name} {arm}: {sum(right)}/{len(right)}")
    table = {name: {arm: {"accuracy": round(statistics.mean(values), 3),
                          "sd": round(statistics.stdev(values), 3) if len(values) > 1 else None,
                          "n": len(sets[name]) if name in sets else 0,
                          "seconds": round(statistics.median(seconds[name][arm]), 3)}
                    for arm, values in by_arm.items()}
             for name, by_arm in scores.items()}
    examples = questions.sample(found, 7, 0)
    return {"book": book.stem, "facts": len(found),
            "facts_by_kind": dict(Counter(f.kind for f in found)),
            "examples": [{"kind": f.kind, "asked": f.asked, "reworded": f.reworded,
                          "answer": f.answer} for f in examples],
            "training": training, "reader": reading, "routing": routing, "sets": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--book", type=Path, default=DATA / "pride_and_prejudice.txt")
    parser.add_argument("--n", type=int, default=300, help="questions per generated set")
    parser.add_argument("--seeds", type=int, default=1, help="splits and trainings")
    parser.add_argument("--arms", default="text,cache,params,auto",
                        help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, help="at most this many training steps")
    parser.add_argument("--limit", type=int, help="bundled questions per set")
    parser.add_argument("--measure", type=int, default=150,
                        help="facts taught beyond the set, to measure the adapter on")
    parser.add_argument("--reader-questions", type=int, default=300,
                        help="questions the memory reader learns from (kv, auto)")
    parser.add_argument("--teacher", choices=("page", "recall"), default="page",
                        help="page: the text tier reads the passage each taught fact was "
                        "found in; recall: it recalls from the whole namespace")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := [a for a in arms if a not in ARMS]:
        parser.error(f"unknown arm: {', '.join(unknown)} (choose from {', '.join(ARMS)})")
    if not args.book.is_file():
        parser.error(f"no such book: {args.book}")
    os.environ["MEMPIPE_HOME"] = whosaid.isolated_home()
    result = {"benchmark": "tiers", "machine": machine(),
              "model": "smollm2-135m-instruct (default)",
              "taught": "the adapter: the taught half's generated questions (memory/questions.py), "
                        "answered by ask --tier text "
                        + ("reading the passage each was made from" if args.teacher == "page"
                           else "recalling from the namespace") + "; never the bundled sets",
              "teacher": args.teacher,
              "seeds": list(range(args.seeds)), "epochs": args.epochs, "steps": args.steps,
              **run_book(args.book, args.n, list(range(args.seeds)), arms, args.epochs,
                         args.steps, args.limit, args.teacher, args.measure,
                         args.reader_questions)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, by_arm in result["sets"].items():
            print(name, ", ".join(f"{arm} {v['accuracy']:.1%} ({v['seconds']} s)"
                                  for arm, v in by_arm.items()))


if __name__ == "__main__":
    main()
