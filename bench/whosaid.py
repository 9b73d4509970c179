"""Question answering from text memory on the who-said sets, with two baselines on the
same model in the same run: the top-3 BM25 passages in the prompt, and the book's first
7,000 tokens in the prompt.

    python bench/whosaid.py --json [--book PATH --qa PATH] [--limit N] [--truncate-limit N]

Defaults: every book in examples/data/qa/ with its book. The truncation baseline prefills
7,000 tokens per question (about a minute each on 2 CPU cores), so it runs on the first
--truncate-limit questions of each book; the output says how many."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402

DATA = ROOT / "examples" / "data"
TRUNCATE_TOKENS = 7000
BM25_PASSAGES, BM25_TOKENS = 3, 256
BASELINE_PROMPT = "{text}\n\n---\nUsing only the text above, answer briefly: {question}"
TITLE = re.compile(r"^(Mr|Mrs|Ms|Miss|Dr|Lady|Lord|Sir|Colonel|Captain)\.?\s")


def correct(answer: str, gold: str) -> bool:
    """Right when the answer contains the speaker: title + surname where the gold has a
    title, else the last word of the name."""
    wanted = gold if TITLE.match(gold) else gold.split()[-1]
    return " ".join(wanted.lower().split()) in " ".join(answer.lower().split())


def book_parser(doc: str) -> argparse.ArgumentParser:
    """The options every who-said benchmark takes: --json, --book with --qa, --limit."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--book", type=Path, help="a book (with --qa)")
    parser.add_argument("--qa", type=Path, help="its who-said questions, JSON lines")
    parser.add_argument("--limit", type=int, help="questions per book")
    return parser


def parse_sets(parser: argparse.ArgumentParser, kind: str = "whosaid"
               ) -> tuple[argparse.Namespace, list[tuple[Path, Path]]]:
    """The options given and the books with questions they choose (`sets`); --book
    without --qa, or --qa without --book, is refused rather than quietly ignored."""
    args = parser.parse_args()
    if bool(args.book) != bool(args.qa):
        parser.error("--book and --qa go together")
    return args, sets(args.book, args.qa, kind)


def sets(book: Path | None = None, qa: Path | None = None, kind: str = "whosaid"
         ) -> list[tuple[Path, Path]]:
    """The books and their questions a benchmark runs on: `book` with `qa` when given,
    else every bundled book that has a question set of `kind` (whosaid, general)."""
    if book is not None and qa is not None:
        return [(book, qa)]
    return [(DATA / (qa.name.split(".")[0] + ".txt"), qa)
            for qa in sorted(DATA.glob(f"qa/*.{kind}.jsonl"))]


def isolated_home() -> str:
    """A fresh MEMPIPE_HOME that shares the converted models of the real one, so the
    benchmark's memory never mixes with the user's."""
    from mempipe.config import home

    models = home() / "models"
    fresh = tempfile.mkdtemp(prefix="mempipe-bench-")
    if models.exists():
        os.symlink(models, Path(fresh) / "models")
    return fresh


async def generate(engine, prompt: str) -> str:
    from mempipe.engine import GenerationRequest, Message

    request = GenerationRequest(messages=[Message(role="user", content=prompt)],
                                max_tokens=32, budget=8192, agent="baseline")
    return (await engine.generate(request)).text


def rephrase(question: str, form: str | None) -> str:
    """The question asked another way: `form` with {quote} for the quoted words."""
    if not form:
        return question
    return form.format(quote=re.search(r'"(.*)"', question).group(1))


def run_book(book: Path, qa: Path, limit: int | None, truncate_limit: int,
             form: str | None = None, skip_baselines: bool = False) -> dict:
    import anyio

    from mempipe import Item, Memory, ask
    from mempipe.chunking import chunk_spans
    from mempipe.engine import get_engine
    from mempipe.pipes.relevance import bm25

    engine = get_engine()
    text = book.read_text()
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    questions = [{**q, "question": rephrase(q["question"], form)} for q in questions]
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]

    started = time.perf_counter()
    passages = Memory(namespace).remember(Item(text=text, source=str(book),
                                               span=(0, len(text))))
    index_s = time.perf_counter() - started
    log(f"{book.name}: {passages} passages indexed in {index_s:.1f} s")

    mine, seconds = [], []
    for n, q in enumerate(questions, 1):
        started = time.perf_counter()
        answer = ask(q["question"], from_=namespace, tier="text").pipeline().run(engine=engine)
        seconds.append(time.perf_counter() - started)
        mine.append(correct(answer, q["answer"]))
        log(f"{book.name} {n}/{len(questions)} mempipe: {answer!r} ({q['answer']})")

    pieces = [text[a:b] for a, b in chunk_spans(text, BM25_TOKENS, engine.count_tokens)]
    bm25_ok, bm25_s = [], []
    for n, q in enumerate([] if skip_baselines else questions, 1):
        started = time.perf_counter()
        scores = bm25(q["question"], pieces)
        top = sorted(range(len(pieces)), key=lambda i: -scores[i])[:BM25_PASSAGES]
        prompt = BASELINE_PROMPT.format(text="\n\n".join(pieces[i] for i in sorted(top)),
                                        question=q["question"])
        answer = anyio.run(generate, engine, prompt)
        bm25_s.append(time.perf_counter() - started)
        bm25_ok.append(correct(answer, q["answer"]))
        log(f"{book.name} {n}/{len(questions)} bm25: {answer!r}")

    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"][:TRUNCATE_TOKENS]
    head = engine.tokenizer.decode(ids)
    trunc_ok, trunc_s = [], []
    for n, q in enumerate([] if skip_baselines else questions[:truncate_limit], 1):
        started = time.perf_counter()
        answer = anyio.run(generate, engine, BASELINE_PROMPT.format(text=head,
                                                                    question=q["question"]))
        trunc_s.append(time.perf_counter() - started)
        trunc_ok.append(correct(answer, q["answer"]))
        log(f"{book.name} {n}/{truncate_limit} truncate: {answer!r}")

    def share(flags: list[bool]) -> float | None:
        return round(sum(flags) / len(flags), 3) if flags else None

    return {"questions": len(questions), "passages": passages, "index_s": round(index_s, 2),
            "accuracy": share(mine), "median_s": round(statistics.median(seconds), 3),
            "baseline_bm25": share(bm25_ok),
            "baseline_bm25_median_s": round(statistics.median(bm25_s), 3) if bm25_s else None,
            "baseline_truncate": share(trunc_ok), "baseline_truncate_questions": len(trunc_ok),
            "baseline_truncate_median_s": round(statistics.median(trunc_s), 3)
            if trunc_s else None}


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--truncate-limit", type=int, default=5,
                        help="questions per book for the 7,000-token baseline")
    parser.add_argument("--form", help='ask each question another way, e.g. '
                        '\'"{quote}" -- who said that?\'')
    parser.add_argument("--skip-baselines", action="store_true")
    args, pairs = parse_sets(parser)
    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = {book.stem: run_book(book, qa, args.limit, args.truncate_limit, args.form,
                                 args.skip_baselines)
             for book, qa in pairs}

    def mean(key: str) -> float | None:
        values = [b[key] for b in books.values() if b[key] is not None]
        return round(sum(values) / len(values), 3) if values else None

    result = {"benchmark": "whosaid", "form": args.form,
              "machine": machine(),
              "model": "smollm2-135m-instruct (default)", "books": books,
              "accuracy": mean("accuracy"), "median_s": mean("median_s"),
              "baseline_bm25": mean("baseline_bm25"),
              "baseline_truncate": mean("baseline_truncate")}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, b in books.items():
            print(f"{name}: {b['accuracy']:.0%} (bm25 top-3 {b['baseline_bm25']}, "
                  f"first 7,000 tokens {b['baseline_truncate']} of "
                  f"{b['baseline_truncate_questions']}), median {b['median_s']} s")


if __name__ == "__main__":
    main()
