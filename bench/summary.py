"""Summaries checked against their source, for a whole book and for its first chapter:
names the summary holds that the source does not (invented), how many of the source's five
most mentioned names it keeps, repeated sentences, words and seconds. Beside it, in the
same run, an extractive summary (the sentences nearest the centroid of all the source's
sentence embeddings, in the source's order; no model).

    python bench/summary.py --json [--book PATH ...] [--words 150] [--skip-book]

Defaults: every bundled book. A name is a run of capitalised words (pipes.answers.names);
it is invented when one of its words occurs nowhere in the source."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402
from bench.whosaid import DATA, isolated_home  # noqa: E402

_HEADING = re.compile(r"^\s*chapter\b[^\n]*$", re.IGNORECASE | re.MULTILINE)
MIN_CHAPTER_CHARS = 2000  # a table of contents' lines stand closer together


def first_chapter(text: str) -> str:
    """The text between the first two chapter headings that stand far enough apart to
    hold a chapter (the contents' entries do not)."""
    starts = [m.end() for m in _HEADING.finditer(text)]
    heads = [m.start() for m in _HEADING.finditer(text)]
    for start, end in zip(starts, heads[1:]):
        if end - start >= MIN_CHAPTER_CHARS:
            return text[start:end].strip()
    return text[:20000]


def checked(summary: str, source: str) -> dict:
    from mempipe.chunking import sentence_spans
    from mempipe.memory.query import words
    from mempipe.pipes.answers import names

    known = set(words(source))
    invented = sorted({n for n in names(summary, "") if not set(words(n)) <= known})
    top = names(source, "")[:5]
    sentences = [" ".join(summary[a:b].split()).lower() for a, b in sentence_spans(summary)]
    return {"invented_names": invented, "invented": len(invented),
            "top5_names": top, "top5_kept": sum(n.lower() in summary.lower() for n in top),
            "repeated_sentences": len(sentences) - len(set(sentences)),
            "words": len(summary.split()), "summary": summary}


def extractive(text: str, words_wanted: int) -> str:
    """The source's most central sentences, in its order, within `words_wanted` words."""
    from mempipe.chunking import sentence_spans
    from mempipe.memory.embed import default_embedder
    from mempipe.pipes.reading import is_structure

    sentences = [" ".join(text[a:b].split()) for a, b in sentence_spans(text)
                 if not is_structure(text[a:b]) and len(text[a:b].split()) >= 4]
    vectors = default_embedder().embed(sentences)
    centre = vectors.mean(axis=0)
    chosen, used = [], 0
    for i in sorted(range(len(sentences)), key=lambda i: -float(vectors[i] @ centre)):
        size = len(sentences[i].split())
        if used + size <= words_wanted:
            chosen.append(i)
            used += size
    return " ".join(sentences[i] for i in sorted(chosen))


def measure(name: str, text: str, source: str, words_wanted: int) -> dict:
    from mempipe import Item, summarize
    from mempipe.engine import get_engine

    engine = get_engine()
    started = time.perf_counter()
    [item] = summarize(words=words_wanted).pipeline().items(
        [Item(text=text, source=source, span=(0, len(text)))], engine=engine)
    seconds = time.perf_counter() - started
    log(f"{name}: summarized in {seconds:.0f} s")
    started = time.perf_counter()
    baseline = extractive(text, words_wanted)
    baseline_s = time.perf_counter() - started
    return {"chars": len(text), "mempipe": {**checked(item.text, text),
                                            "seconds": round(seconds, 1),
                                            "pieces": item.meta.get("pieces")},
            "baseline_extractive": {**checked(baseline, text),
                                    "seconds": round(baseline_s, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--book", type=Path, action="append", help="a book (repeatable)")
    parser.add_argument("--words", type=int, default=150, help="length of each summary")
    parser.add_argument("--skip-book", action="store_true",
                        help="first chapters only (a whole book takes minutes)")
    args = parser.parse_args()
    import os

    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = args.book or sorted(DATA.glob("*.txt"))
    result: dict = {"benchmark": "summary", "machine": machine(), "words": args.words,
                    "model": "smollm2-135m-instruct (default)", "books": {}}
    for book in books:
        text = book.read_text()
        runs = {"first_chapter": measure(f"{book.stem} chapter 1", first_chapter(text),
                                         str(book), args.words)}
        if not args.skip_book:
            runs["book"] = measure(book.stem, text, str(book), args.words)
        result["books"][book.stem] = runs
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, runs in result["books"].items():
            for part, run in runs.items():
                m, b = run["mempipe"], run["baseline_extractive"]
                print(f"{name} {part}: invented {m['invented']} (extractive {b['invented']}), "
                      f"top-5 names kept {m['top5_kept']} ({b['top5_kept']}), "
                      f"repeated {m['repeated_sentences']}, {m['seconds']} s")


if __name__ == "__main__":
    main()
