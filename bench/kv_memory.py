"""Key/value memories (tier 2) against text (tier 1): the same recalled passages read as
text (prefilled) or injected as stored keys and values, for every compression setting.

    python bench/kv_memory.py --json [--book PATH --qa PATH] [--k 3 5] [--settings ...]
                              [--limit N] [--reader-book PATH] [--reader-settings ...]

For each who-said question: the passages `ask --from` would recall (the best k, each
widened by its neighbours), and the answer the model writes from them (greedy, 10
tokens). Per arm: accuracy of the written answers at each k; `chosen_accuracy`, the
model choosing among the names `ask` offers (at the largest k: the quoted question and
the names alone nearly decide it, see the `none` arm); time to first token at the
largest k (from stored blobs to the first token: loading, dequantising and rotating
included; the text arm prefills the passages); bytes stored per passage token; the
prefill FLOPs an injected prompt saves (2 x parameters x passage tokens not read).
The `none` arm reads no passage at all: what the question alone gives. Arms named
`SETTING+reader` read their memories with the memory reader (memory/reader.py), trained
first on another book (never the one measured), its training time reported; or loaded
(--reader-book READER.safetensors); or, with --reader-book held-out, trained on every
bundled book with the measured one's measured passages cut out (each quote's paragraphs
within 2,500 characters: its passage and the neighbours recall widens it by), as a user
trains it on a namespace and asks about passages it was not taught. `default` is the
smallest setting within 2 points of text at every k and at least 5x faster to the first
token; it is what `--tier kv` stores (and reads with the reader if its name says so)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import log, machine  # noqa: E402
from bench.whosaid import DATA, book_parser, correct, isolated_home, parse_sets  # noqa: E402

SETTINGS = ["fp16-128of128-all", "int8-128of128-all", "int4-128of128-all",
            "int8-32of128-all", "int8-8of128-all", "int8-128of128-half"]
READER_SETTINGS = ["int8-128of128-all", "int8-8of128-all"]
HELD_OUT = 2500  # characters cut each side of a measured quote: its passage, two neighbours


def train_reader(book: Path, questions: int, qa: Path | None = None) -> tuple[object, dict]:
    """The memory reader trained on `book`, and what training it took; or with `book` a
    trained reader (.safetensors), that one. With `qa`, `book` is the one measured: the
    reader learns from every bundled book, with `qa`'s passages cut from this one."""
    from mempipe import Item, Memory
    from mempipe.agents.ask import teacher
    from mempipe.engine import get_engine
    from mempipe.engine.lora import Adapter
    from mempipe.memory import reader

    if book.suffix == ".safetensors":
        adapter = Adapter.load(book)
        return adapter, {"trained_on": adapter.about["trained_on"], "loaded": str(book),
                         "questions": int(adapter.about["questions"]), "rank": adapter.rank}
    sources = ({book: book.read_text()} if qa is None else
               {b: held_out(b.read_text(), qa) if b.resolve() == book.resolve() else b.read_text()
                for b in sorted(DATA.glob("*.txt"))})
    memory = Memory("reader-" + book.stem[:50])
    for source, text in sources.items():
        memory.remember(Item(text=text, source=str(source), span=(0, len(text))))
    started = time.perf_counter()
    path, losses = reader.train(memory, get_engine(), teacher(memory.namespace, get_engine()),
                                count=questions)
    adapter = reader.load(get_engine())
    about = {"trained_on": {b.name: len(text) for b, text in sources.items()},
             "seconds": round(time.perf_counter() - started),
             "questions": int(adapter.about["questions"]), "rank": adapter.rank,
             "loss_by_epoch": [round(x, 3) for x in losses], "bytes": path.stat().st_size}
    log(f"reader: {json.dumps(about)}")
    return adapter, about


def held_out(text: str, qa: Path, around: int = HELD_OUT) -> str:
    """`text` without the paragraphs within `around` characters of each of `qa`'s
    quotes: the passages a measured question recalls, and their neighbours, never taught."""
    cuts = []
    for line in qa.read_text().splitlines():
        if line.strip():
            at = json.loads(line)["offset"]
            start = text.rfind("\n\n", 0, max(0, at - around))
            end = text.find("\n\n", min(len(text), at + around))
            cuts.append((max(0, start), len(text) if end < 0 else end))
    kept, last = [], 0
    for start, end in sorted(cuts):
        if start > last:
            kept.append(text[last:start])
        last = max(last, end)
    return "".join(kept) + text[last:]


def run_book(book: Path, qa: Path, ks: list[int], settings: list[str], limit: int | None,
             reader_book: Path | None = None, reader_settings: list[str] = (),
             reader_questions: int = 300) -> dict:
    import anyio

    from mempipe import Item, Memory
    from mempipe.agents.asking.question import joined, names_for
    from mempipe.engine import GenerationRequest, get_engine
    from mempipe.engine.base import best
    from mempipe.memory import kv
    from mempipe.memory.store import with_neighbours

    engine = get_engine()
    model = engine.fingerprint
    text = book.read_text()
    memory = Memory(book.stem[:60])
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    parameters = sum(p.numel() for p in engine.model.parameters())

    plans = []  # (question, gold, k, passages, options)
    for q in questions:
        for k in ks:
            found = [(memory.store, p) for p in memory.recall(q["question"], k)]
            groups = [group for _, group in with_neighbours(found)]
            passages = [p for group in groups for p in group]
            plans.append((q["question"], q["answer"], k, passages,
                          names_for(q["question"], [joined(g) for g in groups])))
    held = reader_book == Path("held-out")
    adapter, reader = (train_reader(book if held else reader_book, reader_questions,
                                    qa if held else None) if reader_settings
                       else (None, None))
    unique = {p.id: p for plan in plans for p in plan[3]}
    started = time.perf_counter()
    states = dict(zip(unique, engine.read_passages(kv.framing(),
                                                   [p.text for p in unique.values()])))
    log(f"{book.name}: {len(unique)} passages read for their keys and values in "
        f"{time.perf_counter() - started:.0f} s")
    tokens = {pid: s.keys.shape[2] for pid, s in states.items()}

    async def written(request: GenerationRequest) -> tuple[str, float]:
        """The answer the model writes, and the seconds to its first piece."""
        began, first, pieces = time.perf_counter(), None, []
        async for piece in engine.stream(request):
            first = first or time.perf_counter() - began
            pieces.append(piece)
        return "".join(pieces), first or time.perf_counter() - began

    arms = []
    for name in ["text", "none", *settings, *(f"{s}+reader" for s in reader_settings)]:
        setting = (None if name in ("text", "none")
                   else kv.Compression.parse(name.removesuffix("+reader")))
        reading = adapter if name.endswith("+reader") else None
        blobs = {} if setting is None else {
            pid: kv.compress(s, setting, model) for pid, s in states.items()}
        hits: dict[int, list[bool]] = {k: [] for k in ks}
        chosen: list[bool] = []
        ttft = []
        for question, gold, k, passages, options in plans:
            if name == "none":  # the control: no passage read at all
                passages = []
            memories = [kv.load(blobs[p.id], model) for p in passages] if setting else []
            framing = (kv.framing(question) if setting
                       else kv.framing_as_text(question, "".join(p.text for p in passages)))
            request = GenerationRequest(messages=framing, memories=memories, max_tokens=10,
                                        budget=8192, agent="bench", adapter=reading)
            answer, seconds = anyio.run(written, request)
            hits[k].append(correct(answer, gold))
            if k == max(ks):
                ttft.append(seconds)
                scores = (engine.score(framing, options, memories, reading) if options
                          else [])
                pick, _ = best(options, scores)
                chosen.append(correct(pick, gold))
        passage_tokens = sum(tokens.values())
        stored = (sum(len(b) for b in blobs.values()) if setting is not None else 0
                  if name == "none" else sum(len(unique[pid].text.encode()) for pid in unique))
        saved = 0 if setting is None else 2 * parameters * statistics.mean(
            sum(tokens[p.id] for p in plan[3]) for plan in plans if plan[2] == max(ks))
        arm = {"name": name,
               "accuracy": round(sum(hits[max(ks)]) / len(hits[max(ks)]), 3),
               "accuracy_by_k": {str(k): round(sum(h) / len(h), 3) for k, h in hits.items()},
               "chosen_accuracy": round(sum(chosen) / len(chosen), 3),
               "ttft_s": round(statistics.median(ttft), 3),
               "bytes_per_token": round(stored / passage_tokens, 1),
               "prefill_flops_saved": float(f"{saved:.3g}")}
        arms.append(arm)
        log(f"{book.name}: {json.dumps(arm)}")
    choices = [len(plan[4]) for plan in plans if plan[2] == max(ks)]
    return {"questions": len(questions), "passages": len(unique),
            "one_option_or_none": sum(n <= 1 for n in choices), "reader": reader,
            "arms": arms}


def other_book(book: Path) -> Path:
    """A bundled book that is not `book`, for the reader to learn from."""
    return next(b for b in sorted(DATA.glob("*.txt")) if b.resolve() != book.resolve())


def choose_default(books: dict) -> str | None:
    """The smallest setting within 2 points of text at every k in every book, and at
    least 5x faster to the first token than text."""
    fits = []
    names = [a["name"] for a in next(iter(books.values()))["arms"]
             if a["name"] not in ("text", "none")]
    for name in names:
        ok, size = True, 0.0
        for result in books.values():
            arms = {a["name"]: a for a in result["arms"]}
            text, arm = arms["text"], arms[name]
            ok &= all(arm["accuracy_by_k"][k] >= text["accuracy_by_k"][k] - 0.02
                      for k in text["accuracy_by_k"])
            ok &= arm["ttft_s"] * 5 <= text["ttft_s"]
            size = max(size, arm["bytes_per_token"])
        if ok:
            fits.append((size, name))
    return min(fits)[1] if fits else None


def mean_arms(books: dict) -> list[dict]:
    """Each arm's figures averaged over the books."""
    results = list(books.values())
    arms = []
    for i, arm in enumerate(results[0]["arms"]):
        each = [r["arms"][i] for r in results]
        mean = {key: round(statistics.mean(a[key] for a in each), 3)
                for key in ("accuracy", "chosen_accuracy", "ttft_s", "bytes_per_token")}
        mean["accuracy_by_k"] = {k: round(statistics.mean(a["accuracy_by_k"][k] for a in each), 3)
                                 for k in arm["accuracy_by_k"]}
        mean["prefill_flops_saved"] = float(
            f"{statistics.mean(a['prefill_flops_saved'] for a in each):.3g}")
        arms.append({"name": arm["name"], **mean})
    return arms


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5], help="passages recalled")
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="KV settings")
    parser.add_argument("--reader-book", type=Path,
                        help="the book the memory reader learns from (default: another "
                        "one), a reader trained before (.safetensors), or held-out: every "
                        "bundled book, the measured questions' passages cut from this one")
    parser.add_argument("--reader-settings", nargs="*", default=READER_SETTINGS,
                        help="KV settings also read with the memory reader (none: no reader)")
    parser.add_argument("--reader-questions", type=int, default=300,
                        help="questions the reader learns from")
    args, pairs = parse_sets(parser)
    os.environ["MEMPIPE_HOME"] = isolated_home()
    books = {book.stem: run_book(book, qa, sorted(args.k), args.settings, args.limit,
                                 args.reader_book or other_book(book), args.reader_settings,
                                 args.reader_questions)
             for book, qa in pairs}
    from mempipe.engine import get_engine

    engine = get_engine()
    default = choose_default(books)
    result = {"benchmark": "kv_memory",
              "machine": machine(),
              "model": engine.name, "dtype": str(engine.model.dtype), "k": sorted(args.k),
              "arms": mean_arms(books), "default": default, "books": books}
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
