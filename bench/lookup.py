"""Drafted decoding (mempipe/engine/lookup.py) against plain greedy decoding, in one run on
the same model: every general question of the bundled books asked with `ask --from`, once
with drafts and once without, in alternating order; seconds per question (median),
decoding tokens per second, and whether the two answers are the same.

    python bench/lookup.py --json [--book PATH --qa PATH] [--limit N]

A step that checks a draft reads its tokens with the same weights a plain step reads one
with, so the answers should match; where rounding in a wider pass tips a near tie, they
may differ, and the bench counts how often."""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.general import correct  # noqa: E402
from bench.report import log, machine  # noqa: E402
from bench.whosaid import book_parser, isolated_home, parse_sets  # noqa: E402

ARMS = {"plain": 0, "drafted": 7}  # guessed tokens a step checks


def asked(question: str, namespace: str, engine: object, k: int) -> tuple[str, float]:
    from mempipe import ask
    from mempipe.errors import MempipeError

    started = time.perf_counter()
    try:
        answer = ask(question, from_=namespace, tier="text", k=k).pipeline() \
            .items(engine=engine)[0].text
    except MempipeError:  # a refusal: the same in both arms, so it is compared too
        answer = ""
    return answer, time.perf_counter() - started


def run_book(book: Path, qa: Path, limit: int | None, k: int) -> dict:
    from mempipe import Item, Memory
    from mempipe.engine import get_engine

    engine = get_engine()
    batcher = engine.batcher  # type: ignore[attr-defined]
    text = book.read_text()
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]
    Memory(namespace).remember(Item(text=text, source=str(book), span=(0, len(text))))
    asked(questions[0]["question"], namespace, engine, k)  # warm: first-use costs aside

    rows, decoding = [], {arm: [0, 0.0] for arm in ARMS}
    for n, q in enumerate(questions, 1):
        row: dict = {"question": q["question"]}
        for arm in (list(ARMS) if n % 2 else list(reversed(ARMS))):
            batcher.drafts = ARMS[arm]
            tokens, seconds = batcher.decoded, batcher.decode_seconds
            answer, took = asked(q["question"], namespace, engine, k)
            decoding[arm][0] += batcher.decoded - tokens
            decoding[arm][1] += batcher.decode_seconds - seconds
            row[arm] = {"answer": answer, "seconds": round(took, 3),
                        "correct": correct(answer, q["answers"])}
        row["same"] = row["plain"]["answer"] == row["drafted"]["answer"]
        rows.append(row)
        log(f"{book.name} {n}/{len(questions)}: {row['plain']['seconds']} s plain, "
            f"{row['drafted']['seconds']} s drafted, {'same' if row['same'] else 'DIFFERENT'}")
    batcher.drafts = ARMS["drafted"]

    def median(arm: str) -> float:
        return round(statistics.median(r[arm]["seconds"] for r in rows), 3)

    return {
        "questions": len(rows),
        "median_s": {arm: median(arm) for arm in ARMS},
        "median_ratio": round(median("plain") / median("drafted"), 2),
        "total_s": {arm: round(sum(r[arm]["seconds"] for r in rows), 1) for arm in ARMS},
        "decoding_tokens_per_s": {arm: round(t / s, 1) if s else None
                                  for arm, (t, s) in decoding.items()},
        "same_answers": round(sum(r["same"] for r in rows) / len(rows), 3),
        "accuracy": {arm: round(sum(r[arm]["correct"] for r in rows) / len(rows), 3)
                     for arm in ARMS},
        "rows": rows,
    }


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("-k", type=int, default=5, help="passages ask recalls")
    args, pairs = parse_sets(parser, "general")
    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = {book.stem: run_book(book, qa, args.limit, args.k) for book, qa in pairs}
    result = {"benchmark": "lookup", "machine": machine(),
              "model": "smollm2-135m-instruct (default)", "arms": ARMS, "books": books}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, b in books.items():
            print(f"{name}: median {b['median_s']['plain']} s plain, "
                  f"{b['median_s']['drafted']} s drafted ({b['median_ratio']}x); "
                  f"same answers {b['same_answers']:.0%}")


if __name__ == "__main__":
    main()
