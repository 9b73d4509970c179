"""Tier 3 (a namespace's adapter) against the base model and text retrieval, on the
who-said sets, with placement deciding what the adapter learns.

    python bench/params.py --json [--book PATH --qa PATH] [--limit N] [--questions 300]
                           [--epochs 3] [--steps N] [--home DIR]
    python bench/params.py --json --general ADAPTER.safetensors BOOK   # step 6 alone

Per book, in one run and one fresh mempipe home:
1. The book is remembered (text), and every question is asked with `ask --tier text`:
   `text_accuracy`. These are the users' questions: their passages are now hot.
2. `closed_book_base`: the base model answers each question with nothing recalled.
3. `mempipe memory place` trains the adapter: facts of the hot passages first, then
   others, up to --questions (KV budget 0: this bench measures the adapter, not memories).
   Its training time, facts and bytes are reported. With --home, a home kept from an
   earlier run, its adapter is measured as it is, not trained again.
4. `closed_book_adapter`: `ask --tier params` on the same (now repeated) questions,
   each asked in turn of params, auto and text (`text_repeated`: the times compared).
5. `auto_accuracy`: `ask --tier auto`, the adapter when sure, else text; the share the
   adapter answered, and the accuracy and that share each confidence threshold would
   give. `about`: the same timing on questions the adapter was taught that quote nothing
   ("What does the text say about X?"), where text reads a few passages and writes.
   `who_is`: where the book has `qa/BOOK.whois.jsonl` (who-is-who questions, each right
   when the answer holds any of its words), steps 1, 2, 4 and 5 on those too: asked
   with the who-said questions before training, so their passages are hot as well.
6. `general_before` / `general_after`: the model without and with the adapter on a
   held-out cloze test from the other book (pick the true next sentence of 4).
Seconds are medians per answer, from the question to the whole answer."""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.kv_memory import other_book  # noqa: E402
from bench.report import log, machine  # noqa: E402
from bench.whosaid import book_parser, correct, isolated_home, parse_sets  # noqa: E402

CLOZE, CHOICES = 300, 4  # 60 items were noise-level (+-6 points); see docs
ABOUT = 30
THRESHOLDS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01]


def judged(answer: str, gold: str | list[str]) -> bool:
    """A who-said answer is right when it names the speaker (`whosaid.correct`); a who-is
    answer when it holds any of the words listed."""
    if isinstance(gold, str):
        return correct(answer, gold)
    return any(word.lower() in answer.lower() for word in gold)


def timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def cloze(book: Path, count: int = CLOZE, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Held-out items: two sentences of `book`, then the true next one and three drawn
    from elsewhere in it (the true one first)."""
    text = " ".join(book.read_text().split())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 30 <= len(s) <= 200]
    chooser = random.Random(seed)
    items = []
    for i in chooser.sample(range(2, len(sentences)), count):
        others = chooser.sample([s for j, s in enumerate(sentences) if abs(j - i) > 5],
                                CHOICES - 1)
        items.append((" ".join(sentences[i - 2:i]), [sentences[i], *others]))
    return items


def general(engine, items: list[tuple[str, list[str]]], adapter=None) -> float:
    """The share of cloze items where the model likes the true next sentence best."""
    from mempipe.engine import Message
    from mempipe.engine.base import best

    right = 0
    for context, options in items:
        messages = [Message(role="user", content=f"Continue the text.\n\n{context}")]
        scores = engine.score(messages, options, adapter=adapter)
        right += best(options, scores)[0] == options[0]
    return round(right / len(items), 3)


def by_adapter(runs: list[tuple[str, str, float]]) -> float:
    """The share of answers the adapter gave (as the trace said)."""
    return round(statistics.fmean("answered from params" in note for _, note, _ in runs), 3)


def run_book(book: Path, qa: Path, limit: int | None, questions: int, epochs: int,
             steps: int | None, kept: bool = False) -> dict:
    """Every measure of the module's docstring for one book; `kept`: its home holds an
    adapter trained before, measured as it is."""
    import anyio

    from mempipe import Item, Memory, ask
    from mempipe.agents.ask import teacher
    from mempipe.engine import GenerationRequest, get_engine
    from mempipe.memory import params, placement
    from mempipe.memory.store import uncounted
    from mempipe.pipes.trace import Trace

    engine = get_engine()
    asked = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    asked = asked[:limit] if limit else asked
    whois = qa.with_name(qa.name.replace(".whosaid.", ".whois."))
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]
    text = book.read_text()
    memory = Memory(namespace)
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))

    def answer(question: str, tier: str) -> tuple[str, str, float]:
        trace = Trace()
        pipeline = ask(question, from_=namespace, tier=tier, max_tokens=24).pipeline()
        items, seconds = timed(lambda: pipeline.items(engine=engine, trace=trace))
        return items[0].text, "; ".join(trace.stages[0].notes), seconds

    def in_turn(questions: list[str], tiers: tuple[str, ...]) -> dict[str, list]:
        """Each question asked of every tier in turn: whatever the machine does meanwhile
        falls on every tier alike (run one tier after another, the same answers measured
        0.08-0.17 s from run to run)."""
        results: dict[str, list] = {tier: [] for tier in tiers}
        for question in questions:
            for tier in tiers:
                results[tier].append(answer(question, tier))
        return results

    arms: dict[str, dict] = {}
    with uncounted():  # loads the model, tokenizer and index before anything is timed
        answer(asked[0]["question"], "text")

    def arm(into: dict, name: str, results: list[tuple[str, str, float]],
            gold: list[dict]) -> None:
        right = [judged(a, q["answer"]) for (a, _, _), q in zip(results, gold)]
        into[name] = {"accuracy": round(sum(right) / len(right), 3),
                      "median_s": round(statistics.median(s for _, _, s in results), 3),
                      "right": right}
        log(f"{book.name} {name}: {into[name]['accuracy']:.1%}, "
            f"median {into[name]['median_s']} s")

    arm(arms, "text", [answer(q["question"], "text") for q in asked], asked)
    who_is: dict[str, dict] = {}  # "Who is X?": any of its words right (qa/*.whois.jsonl)
    if whois.is_file():
        named = [json.loads(line) for line in whois.read_text().splitlines() if line.strip()]
        arm(who_is, "text", [answer(q["question"], "text") for q in named], named)

    async def closed(question: str) -> str:
        request = GenerationRequest(messages=params.messages(question), max_tokens=24,
                                    budget=2048, agent="bench")
        return (await engine.generate(request)).text

    def base(gold: list[dict]) -> list[tuple[str, str, float]]:
        """Each question answered by the base model alone, as `answer` gives it."""
        results = []
        for q in gold:
            text, seconds = timed(lambda q=q: anyio.run(closed, q["question"]))
            results.append((text, "", seconds))
        return results

    arm(arms, "closed_book_base", base(asked), asked)
    if who_is:
        arm(who_is, "closed_book_base", base(named), named)

    plan = placement.plan(memory, engine, budget=0)
    if kept and plan.adapter != "none":
        plan.train = []  # measure the adapter kept in --home as it is
    log(f"{book.name}: " + " | ".join(plan.lines()))
    _, train_s = timed(lambda: plan.train and placement.apply(
        memory, engine, plan, teacher(namespace, engine), count=questions, epochs=epochs,
        steps=steps,
        progress=lambda stage, done, total: log(f"{stage} {done}/{total}")
        if done == total or done % 100 == 0 else None))
    adapter, _ = params.load(memory, engine)
    training = {"seconds": round(train_s) if plan.train else "trained before",
                "hot_passages": plan.recalled,
                "facts": int(adapter.about["facts"]), "rank": adapter.rank,
                "bytes": params.path_for(namespace, engine.fingerprint).stat().st_size,
                "passages_covered": len(adapter.about["passages"].split(","))}
    log(f"{book.name}: trained {json.dumps(training)}")
    with uncounted():  # the adapter's first use casts its weights: not timed either
        answer(asked[0]["question"], "params")

    again = in_turn([q["question"] for q in asked], ("params", "auto", "text"))
    arm(arms, "closed_book_adapter", again["params"], asked)
    auto = again["auto"]
    arm(arms, "auto", auto, asked)
    arm(arms, "text_repeated", again["text"], asked)
    arms["auto"]["answered_by_adapter"] = by_adapter(auto)

    arms["auto"]["taught"] = round(
        sum("never taught" not in note for _, note, _ in auto) / len(auto), 3)
    if who_is:
        runs = in_turn([q["question"] for q in named], ("params", "auto", "text"))
        for tier, name in (("params", "closed_book_adapter"), ("auto", "auto"),
                           ("text", "text_repeated")):
            arm(who_is, name, runs[tier], named)
        who_is["auto"]["answered_by_adapter"] = by_adapter(runs["auto"])

    sure = []  # the adapter's confidence on each question, as auto measured it
    for _, note, _ in auto:
        found = re.search(r"(?:confidence |unsure \()([0-9.]+)", note)
        sure.append(float(found[1]) if found else 0.0)
    pairs = list(zip(arms["closed_book_adapter"]["right"], arms["text"]["right"], sure))
    curve = {str(t): {"accuracy": round(statistics.fmean(a if c >= t else x
                                                          for a, x, c in pairs), 3),
                      "by_adapter": round(statistics.fmean(c >= t for *_, c in pairs), 3)}
             for t in THRESHOLDS}

    about = [q for q in adapter.about.get("taught", "").splitlines()
             if q.startswith("What does")][:ABOUT]
    timing = {}  # none when every fact trained was a quote
    for tier, runs in (in_turn(about, ("text", "auto")) if about else {}).items():
        timing[tier] = {"median_s": round(statistics.median(s for *_, s in runs), 3),
                        "by_adapter": by_adapter(runs)}
    if timing:
        timing["speedup_auto_over_text"] = round(timing["text"]["median_s"]
                                                 / timing["auto"]["median_s"], 2)
    log(f"{book.name} about: {json.dumps(timing)}")

    held_out = cloze(other_book(book))
    before, after = general(engine, held_out), general(engine, held_out, adapter)
    log(f"{book.name}: general {before:.1%} -> {after:.1%}")
    for value in [*arms.values(), *who_is.values()]:
        value.pop("right")
    return {"questions": len(asked), "arms": arms, "who_is": who_is, "training": training,
            "confidence_threshold": params.CONFIDENT, "auto_by_threshold": curve,
            "about": {"questions": len(about), **timing},
            "closed_book_adapter": arms["closed_book_adapter"]["accuracy"],
            "closed_book_base": arms["closed_book_base"]["accuracy"],
            "auto_accuracy": arms["auto"]["accuracy"],
            "text_accuracy": arms["text"]["accuracy"],
            "general_before": before, "general_after": after,
            "speedup_auto_over_text": round(arms["text_repeated"]["median_s"]
                                            / arms["auto"]["median_s"], 2)}


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--questions", type=int, default=300, help="facts the adapter learns")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, help="training steps at most")
    parser.add_argument("--home", help="a mempipe home kept from an earlier run")
    parser.add_argument("--general", nargs=2, type=Path, metavar=("ADAPTER", "BOOK"),
                        help="only the cloze test on BOOK, without and with ADAPTER")
    args, pairs = parse_sets(parser)
    if args.general:
        from mempipe.engine import get_engine
        from mempipe.engine.lora import Adapter

        adapter, book = args.general
        items = cloze(book)
        print(json.dumps({"benchmark": "params-general", "adapter": adapter.name,
                          "held_out": book.name, "items": len(items),
                          "general_before": general(get_engine(), items),
                          "general_after": general(get_engine(), items,
                                                   Adapter.load(adapter))}))
        return
    os.environ["MEMPIPE_HOME"] = args.home or isolated_home()
    books = {book.stem: run_book(book, qa, args.limit, args.questions, args.epochs, args.steps,
                                 kept=bool(args.home))
             for book, qa in pairs}
    from mempipe.engine import get_engine

    engine = get_engine()
    keys = ["closed_book_adapter", "closed_book_base", "auto_accuracy", "text_accuracy",
            "general_before", "general_after"]
    result = {"benchmark": "params", "machine": machine(),
              "model": engine.name, "dtype": str(engine.model.dtype),
              "decoding": os.environ.get("MEMPIPE_QUANTIZE") or "exact",
              **{key: round(statistics.mean(b[key] for b in books.values()), 3)
                 for key in keys}, "books": books}
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
