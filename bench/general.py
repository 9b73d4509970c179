"""General questions (what, where, when, how many, why, how, which person) answered from
text memory, with baselines on the same model in the same run: the top-3 BM25 passages
handed to the model, which writes; the gold evidence sentence handed to the model, which
writes (the ceiling of a written answer); the same gold evidence piped into `ask` (the
ceiling of mempipe's reader: what it answers when retrieval is perfect); and how many of
mempipe's answers were decided without the model.

    python bench/general.py --json [--book PATH --qa PATH] [--limit N]

Defaults: every book in examples/data/qa/ that has a general set. A question is answered
correctly when any accepted answer occurs in the answer (case-insensitive)."""

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

from bench.report import log, machine  # noqa: E402
from bench.whosaid import (  # noqa: E402
    BASELINE_PROMPT,
    BM25_PASSAGES,
    BM25_TOKENS,
    book_parser,
    generate,
    isolated_home,
    parse_sets,
)

EVIDENCE_CHARS = 150  # the gold evidence handed to the writing baseline, with this around it


def correct(answer: str, accepted: list[str]) -> bool:
    said = " ".join(answer.lower().replace("’", "'").split())
    return any(" ".join(a.lower().replace("’", "'").split()) in said for a in accepted)


def located(text: str, question: dict) -> int:
    """Where the question's gold evidence starts in the book (`line` is 1-based)."""
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[:question["line"] - 1])
    return start + max(0, lines[question["line"] - 1].find(question["evidence"]))


def holds(passage_span: tuple[int, int], at: int, length: int) -> bool:
    return passage_span[0] <= at and at + length <= passage_span[1]


def run_book(book: Path, qa: Path, limit: int | None, k: int, baselines: bool = True) -> dict:
    import anyio

    from mempipe import Item, Memory, ask
    from mempipe.chunking import chunk_spans
    from mempipe.engine import get_engine
    from mempipe.errors import MempipeError
    from mempipe.pipes.reading import kind_of
    from mempipe.pipes.relevance import bm25

    engine = get_engine()
    text = book.read_text()
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]
    memory = Memory(namespace)
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))
    pieces = [text[a:b] for a, b in chunk_spans(text, BM25_TOKENS, engine.count_tokens)]

    rows = []
    for n, q in enumerate(questions, 1):
        at, length = located(text, q), len(q["evidence"])
        recalled = memory.recall(q["question"], k=k)
        started = time.perf_counter()
        try:
            item = ask(q["question"], from_=namespace, tier="text", k=k).pipeline() \
                .items(engine=engine)[0]
            answer, meta = item.text, item.meta
        except MempipeError as error:  # a refusal is an abstention the caller saw
            answer, meta = "", {"abstained": True, "error": str(error)}
        seconds = time.perf_counter() - started
        cited = [tuple(s["span"]) for s in meta.get("sources", []) if s.get("span")]

        bm25_answer = gold_answer = reader_answer = ""
        if baselines:
            scores = bm25(q["question"], pieces)
            top = sorted(range(len(pieces)), key=lambda i: -scores[i])[:BM25_PASSAGES]
            bm25_answer = anyio.run(generate, engine, BASELINE_PROMPT.format(
                text="\n\n".join(pieces[i] for i in sorted(top)), question=q["question"]))
            gold = " ".join(text[max(0, at - EVIDENCE_CHARS):at + length + EVIDENCE_CHARS]
                            .split())
            gold_answer = anyio.run(generate, engine, BASELINE_PROMPT.format(
                text=gold, question=q["question"]))
            try:
                reader_answer = ask(q["question"]).pipeline().items(
                    Item(text=gold, source="gold-evidence"), engine=engine)[0].text
            except MempipeError:  # a refusal: the reader abstained
                reader_answer = ""
        rows.append({
            "question": q["question"], "kind": q["kind"], "asked_as": kind_of(q["question"]),
            "answer": answer, "correct": correct(answer, q["answers"]),
            "abstained": bool(meta.get("abstained")), "seconds": round(seconds, 3),
            "confidence": meta.get("confidence"),
            "recalled_evidence": any(holds(p.span, at, length) for p in recalled),
            "cited_evidence": any(holds(s, at, length) for s in cited),  # type: ignore[arg-type]
            "without_model": meta.get("options") == 1 or bool(meta.get("decided")),
            "bm25_answer": bm25_answer, "bm25_correct": correct(bm25_answer, q["answers"]),
            "gold_answer": gold_answer, "gold_correct": correct(gold_answer, q["answers"]),
            "reader_gold_answer": reader_answer,
            "reader_gold_correct": correct(reader_answer, q["answers"]),
        })
        log(f"{book.name} {n}/{len(questions)}: {answer!r} "
            f"({'right' if rows[-1]['correct'] else 'wrong'}; {q['answers'][0]})")

    def share(key: str, subset: list[dict] | None = None) -> float:
        chosen = rows if subset is None else subset
        return round(sum(bool(r[key]) for r in chosen) / len(chosen), 3) if chosen else 0.0

    kinds = sorted({r["kind"] for r in rows})
    return {
        "questions": len(rows), "accuracy": share("correct"),
        "per_kind": {kind: {"n": len(of), "accuracy": share("correct", of),
                            "baseline_bm25": share("bm25_correct", of),
                            "baseline_gold_evidence": share("gold_correct", of),
                            "baseline_reader_gold": share("reader_gold_correct", of)}
                     for kind in kinds for of in [[r for r in rows if r["kind"] == kind]]},
        "abstentions": share("abstained"),
        "median_s": round(statistics.median(r["seconds"] for r in rows), 3),
        f"evidence_recall_at_{k}": share("recalled_evidence"),
        "evidence_cited": share("cited_evidence"),
        "baseline_bm25_writes": share("bm25_correct"),
        "baseline_gold_evidence_writes": share("gold_correct"),
        "baseline_reader_gold_evidence": share("reader_gold_correct"),
        "decided_without_model": share("without_model"),
        "rows": rows,
    }


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("-k", type=int, default=5, help="passages ask recalls")
    parser.add_argument("--skip-baselines", action="store_true")
    args, pairs = parse_sets(parser, "general")
    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = {book.stem: run_book(book, qa, args.limit, args.k, not args.skip_baselines)
             for book, qa in pairs}
    result = {"benchmark": "general", "machine": machine(),
              "model": "smollm2-135m-instruct (default)",
              "taught": "nothing: the model's own weights, no adapter", "books": books}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, b in books.items():
            print(f"{name}: {b['accuracy']:.0%} (bm25 writes {b['baseline_bm25_writes']:.0%}, "
                  f"gold evidence writes {b['baseline_gold_evidence_writes']:.0%}, "
                  f"reader on gold evidence {b['baseline_reader_gold_evidence']:.0%}), "
                  f"abstained {b['abstentions']:.0%}, median {b['median_s']} s")


if __name__ == "__main__":
    main()
