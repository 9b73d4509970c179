"""Text memory at work: indexing time, recall@k of the gold passage with fixed chunks and
with episodes, and recall latency at scale.

    python bench/memory.py --json [--scale 100000] [--episodes BOOK ...] [--skip-episodes]

- indexing: every book in examples/data/qa/ with fixed chunks; episodes (a model forward
  pass over the whole book) on the books named by --episodes (default: Alice only,
  since Pride and Prejudice takes about half an hour on 2 CPU cores).
- recall@k: for each who-said question, is the passage holding the quotation among the
  first k recalled (k = 1, 3, 5)? Fixed chunks and episodes side by side.
- scale: `--scale` synthetic passages (sentences of the books, random unit vectors; the
  query itself is embedded by the real model), recall latency median and p95 over 50
  queries, the first query (loading the vectors) apart; beside it, the same queries
  answered by Python BM25 over the same passages in memory (what `ask` did before)."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import log, machine  # noqa: E402
from bench.whosaid import isolated_home, sets  # noqa: E402


def recall_at_k(memory, text: str, qa: Path) -> dict[str, float]:
    hits = {1: 0, 3: 0, 5: 0}
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    for q in questions:
        quote = re.search(r'"(.*)"', q["question"]).group(1)
        where = text.find(quote)
        found = memory.recall(q["question"], k=5)
        ranks = [i for i, p in enumerate(found) if p.span[0] <= where < p.span[1]]
        for k in hits:
            hits[k] += bool(ranks and ranks[0] < k)
    return {f"recall@{k}": round(n / len(questions), 3) for k, n in hits.items()}


def index_and_recall(episodes_for: set[str]) -> tuple[dict, dict]:
    from mempipe import Item, Memory
    from mempipe.engine import get_engine
    from mempipe.memory import Segmenter

    indexing, recall = {}, {}
    for book, qa in sets():
        text = book.read_text()
        item = Item(text=text, source=str(book), span=(0, len(text)))
        row, rec = {"chars": len(text)}, {}
        ways = [("chunks", Segmenter())]
        if book.stem in episodes_for:
            ways.append(("episodes", Segmenter(engine=get_engine())))
        for way, segmenter in ways:
            memory = Memory(f"{book.stem[:40]}-{way}")
            started = time.perf_counter()
            row[f"{way}_passages"] = memory.remember(item, segmenter=segmenter)
            row[f"{way}_s"] = round(time.perf_counter() - started, 2)
            log(f"{book.name}: {way}: {row[f'{way}_passages']} passages, {row[f'{way}_s']} s")
            rec[way] = recall_at_k(memory, text, qa)
        indexing[book.stem], recall[book.stem] = row, rec
    return indexing, recall


class RandomVectors:
    """Stands in for the embedder while filling the store: scale, not meaning, is measured."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def scale(count: int) -> dict:
    from mempipe import Item
    from mempipe.chunking import sentence_spans
    from mempipe.memory import Store
    from mempipe.pipes.relevance import bm25

    sentences = []
    for book, _ in sets():
        text = book.read_text()
        sentences += [" ".join(text[a:b].split()) for a, b in sentence_spans(text)]
    sentences = [s for s in sentences if len(s) > 20]
    rng = random.Random(0)
    path = Path(tempfile.mkdtemp()) / "scale.db"
    filler = Store(path, embedder=RandomVectors())
    per_document = 100
    started = time.perf_counter()
    for d in range(count // per_document):
        texts = [" ".join(rng.sample(sentences, 3)) for _ in range(per_document)]
        spans, offset = [], 0
        for t in texts:
            spans.append((offset, offset + len(t) + 1))
            offset += len(t) + 1
        filler.add("scale", Item(text=" ".join(texts) + " ", source=f"synthetic-{d}"), spans)
    insert_s = time.perf_counter() - started
    log(f"scale: {count} passages written in {insert_s:.1f} s")

    store = Store(path)  # the real embedder for the queries
    queries = [f'who said "{" ".join(s.split()[:6])}"' if i % 2 else " ".join(s.split()[:8])
               for i, s in enumerate(rng.sample(sentences, 51))]
    started = time.perf_counter()
    store.search(["scale"], queries[0], k=5)
    cold_s = time.perf_counter() - started
    times = []
    for q in queries[1:]:
        started = time.perf_counter()
        store.search(["scale"], q, k=5)
        times.append(time.perf_counter() - started)
    texts = [p for (p,) in store.db.execute("select text from passages").fetchall()]
    baseline = []
    for q in queries[1:6]:
        started = time.perf_counter()
        bm25(q, texts)
        baseline.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"passages": count, "insert_s": round(insert_s, 1),
            "first_recall_s": round(cold_s, 3),
            "recall_median_ms": round(median * 1000, 1),
            "recall_p95_ms": round(sorted(times)[int(0.95 * len(times))] * 1000, 1),
            "baseline_python_bm25_median_ms": round(statistics.median(baseline) * 1000, 1),
            "speedup_vs_baseline": round(statistics.median(baseline) / median, 1),
            "db_mb": round(path.stat().st_size / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic passages")
    parser.add_argument("--episodes", nargs="*", default=["alice_in_wonderland"],
                        help="books (by file stem) to index as episodes too")
    args = parser.parse_args()
    os.environ["MEMPIPE_HOME"] = isolated_home()
    indexing, recall = index_and_recall(set(args.episodes))
    result = {"benchmark": "memory", "machine": machine(),
              "indexing": indexing, "recall": recall,
              "scale": scale(args.scale) if args.scale else None}
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
