"""Re-retrieval while writing (Memory³ swaps memories every 64 tokens written): the same
written answers from key/value memories, recalled once, or again every N tokens for the
question and the answer so far (`ask --tier kv --reretrieve N`).

    python bench/reretrieval.py --json [--book PATH --qa PATH] [--every 0 16 64]
                                [--tokens 96] [--limit N] [--reader PATH]

Each who-said quote becomes a question that asks for a written account of its scene
(`QUESTION`), so the model writes rather than chooses a name; an account is right when it
names the speaker. Per arm (N = 0: recall once): that accuracy, the mean seconds per
answer, and the mean passages read. Memories are read as `ask` reads them: with --reader,
with that trained memory reader (memory/reader.py); without, untrained."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import log, machine  # noqa: E402
from bench.whosaid import book_parser, correct, isolated_home, parse_sets  # noqa: E402

QUESTION = 'What happens when someone says "{quote}"? Describe the scene.'


def run_book(book: Path, qa: Path, every: list[int], tokens: int, limit: int | None) -> dict:
    from mempipe import Item, Memory, ask
    from mempipe.engine import get_engine

    engine = get_engine()
    text = book.read_text()
    namespace = book.stem[:60]
    memory = Memory(namespace)
    memory.remember(Item(text=text, source=str(book), span=(0, len(text))))
    started = time.perf_counter()
    memory.encode_kv(engine)
    log(f"{book.name}: memories computed in {time.perf_counter() - started:.0f} s")
    questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    questions = questions[:limit] if limit else questions
    arms = []
    for n in every:
        right, seconds, read = [], [], []
        for q in questions:
            quote = re.search(r'"(.*)"', q["question"]).group(1)
            asked = ask(QUESTION.format(quote=quote), from_=namespace, tier="kv",
                        reretrieve=n, max_tokens=tokens)
            began = time.perf_counter()
            [answer] = asked.pipeline().items(engine=engine)
            seconds.append(time.perf_counter() - began)
            right.append(correct(answer.text, q["answer"]))
            read.append(len(answer.meta["sources"]))
        arm = {"name": f"every {n}" if n else "once", "every": n,
               "accuracy": round(sum(right) / len(right), 3),
               "seconds_per_answer": round(statistics.mean(seconds), 3),
               "passage_groups_read": round(statistics.mean(read), 2)}
        arms.append(arm)
        log(f"{book.name}: {json.dumps(arm)}")
    return {"questions": len(questions), "arms": arms}


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--every", type=int, nargs="+", default=[0, 16, 64],
                        help="tokens written between recalls (0: recall once)")
    parser.add_argument("--tokens", type=int, default=96, help="tokens each answer writes")
    parser.add_argument("--reader", type=Path, help="a trained memory reader to read with")
    args, pairs = parse_sets(parser)
    os.environ["MEMPIPE_HOME"] = isolated_home()
    from mempipe.engine import get_engine
    from mempipe.memory import reader

    engine = get_engine()
    if args.reader:  # where ask looks for it, in the benchmark's own home
        reader.path_for(engine.fingerprint).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.reader, reader.path_for(engine.fingerprint))
    books = {book.stem: run_book(book, qa, args.every, args.tokens, args.limit)
             for book, qa in pairs}
    result = {"benchmark": "reretrieval",
              "machine": machine(),
              "model": engine.name, "dtype": str(engine.model.dtype),
              "tokens": args.tokens, "reader": reader.load(engine) is not None, "books": books}
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
