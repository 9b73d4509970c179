"""Passkey retrieval far beyond the model's trained positions: a 5-digit key hidden in
filler text (the bundled books) a given number of tokens before the question, read in one
pass with Λ-shaped attention and, where it fits, with plain attention; accuracy per length
and distance.

    python bench/passkey.py --json [--lengths 8192,32768,131072] [--back 600,2000,6000]
        [--keys 3]

The task statement comes `--task-back` tokens before the question (or first, in a shorter
input), where the window sees it: what is measured is whether the key is read, not whether
a statement far out of the window was. (Put right before the question, the small default
model misses every key, even in a 4K input.)
The assistant's answer is begun with --answer-start ("The pass key is", as the passkey
tests of LM-Infinite and Landmark Attention end their prompts), so that a key the model
read is not lost to an answer that talks about something else. The inputs of one key
at several distances share their beginning, which is read once (`LambdaReader.fork`).

A key less than the window back is inside it: Λ attention must find it at any length as
often as at 8K. --keys keys (different digits and filler) are tried at each distance; a
key's input ends with the same filler at every length (longer inputs reach further back),
so that what the window holds is the same and only what lies beyond it changes.

Plain attention here is the same reader with a window wider than the input: every key at
its true distance, past the 8,192 positions the model was trained on. --plain-max caps
the lengths it is run at (its cost grows with the square of the length)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402

BOOKS = [ROOT / "examples" / "data" / "alice_in_wonderland.txt",
         ROOT / "examples" / "data" / "pride_and_prejudice.txt"]
TASK = ("There is an important piece of information hidden inside a lot of irrelevant text. "
        "Find it and memorize it. I will quiz you about it.\n\n")
NEEDLE = "\n\nThe pass key is {key}. Remember it. {key} is the pass key.\n\n"
QUESTION = "\n\nWhat is the pass key?"
ANSWER_START = "The pass key is"


def prompt_ids(engine: Any, filler: list[int], end: int, length: int, back: int,
               task_back: int, key: str, answer_start: str) -> list[int]:
    """One user turn in the model's chat framing: the filler that ends at its token `end`
    (read round), with TASK about `task_back` tokens before the end and the needle about
    `back` tokens before it, then QUESTION; about `length` tokens in all; then the
    assistant's answer begun with `answer_start`."""
    from mempipe.engine import Message

    tokenizer = engine.tokenizer
    frame = engine.prompt_ids([Message(role="user", content=NEEDLE + TASK + QUESTION)])
    room = length - len(frame)
    start = (end - room) % len(filler)
    body = (filler * (room // len(filler) + 2))[start:start + room]
    pieces = sorted([(max(0, room - task_back), TASK),
                     (max(0, room - back), NEEDLE.format(key=key))], key=lambda p: p[0])
    text, at = "", 0
    for where, piece in pieces:
        text += tokenizer.decode(body[at:where]) + piece
        at = where
    text += tokenizer.decode(body[at:]) + QUESTION
    start = tokenizer(answer_start, add_special_tokens=False)["input_ids"]
    return engine.prompt_ids([Message(role="user", content=text)]) + start


def read_all(reader: Any, inputs: list[list[int]], done: int = 0) -> list[Any]:
    """A reader for each input that has read it, the beginnings inputs share read once:
    `reader` has read the `done` tokens that all of them begin with."""
    shared = done
    while all(len(ids) > shared and ids[shared] == inputs[0][shared] for ids in inputs):
        shared += 1
    if shared > done:
        reader.read(inputs[0][done:shared])
    if len(inputs) == 1:
        return [reader]
    groups: dict[int | None, list[int]] = {}  # the inputs by the token they go on with
    for i, ids in enumerate(inputs):
        groups.setdefault(ids[shared] if len(ids) > shared else None, []).append(i)
    readers: list[Any] = [None] * len(inputs)
    for n, members in enumerate(groups.values()):
        own = reader if n == len(groups) - 1 else reader.fork()
        if len(members) > 1 and len(inputs[members[0]]) == shared:  # the same input twice
            read = [own.fork() for _ in members]
        else:
            read = read_all(own, [inputs[i] for i in members], shared)
        for i, one in zip(members, read):
            readers[i] = one
    return readers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lengths", default="8192,32768,131072")
    parser.add_argument("--back", default="600,2000,3500,6000",
                        help="comma-separated distances of the key before the question")
    parser.add_argument("--keys", type=int, default=3, help="keys tried at each distance")
    parser.add_argument("--task-back", type=int, default=3800,
                        help="distance of the task statement before the question")
    parser.add_argument("--window", type=int, default=4096, help="Λ attention's window")
    parser.add_argument("--plain-max", type=int, default=8192,
                        help="longest input read with plain attention")
    parser.add_argument("--answer-start", default=ANSWER_START,
                        help="the words the assistant's answer begins with ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from mempipe.config import DEFAULT_MODEL
    from mempipe.engine.base import GLOBAL_TOKENS
    from mempipe.engine.lambda_attention import LambdaReader
    from mempipe.engine.local import LocalEngine

    engine = LocalEngine(DEFAULT_MODEL)
    runner, tokenizer = engine.batcher.runner, engine.tokenizer
    filler = tokenizer("\n\n".join(b.read_text() for b in BOOKS),
                       add_special_tokens=False)["input_ids"]
    rng = random.Random(args.seed)
    lengths = [int(n) for n in args.lengths.split(",")]
    distances = [int(n) for n in args.back.split(",")]
    # The same keys and filler ends at every length and distance.
    trials = [(f"{rng.randrange(10000, 100000)}", rng.randrange(len(filler)))
              for _ in range(args.keys)]
    result: dict[str, Any] = {
        "benchmark": "passkey", "model": engine.name, "device": engine.device,
        "machine": machine(), "dtype": str(engine.model.dtype).removeprefix("torch."),
        "window": args.window, "global_tokens": GLOBAL_TOKENS,
        "trained_positions": runner.max_positions, "back": distances, "keys": args.keys,
        "task_back": args.task_back, "answer_start": args.answer_start, "runs": []}
    for length in lengths:
        for mode in ("lambda", "plain"):
            if mode == "plain" and length > args.plain_max:
                continue
            window = args.window if mode == "lambda" else length + 256
            by_distance: dict[str, list[int]] = {}
            answers: list[dict[str, Any]] = []
            started, tokens = time.perf_counter(), 0
            for key, end in trials:
                inputs = [prompt_ids(engine, filler, end, length, back, args.task_back, key,
                                     args.answer_start) for back in distances]
                readers = read_all(LambdaReader(runner, window=window),
                                   [ids[:-1] for ids in inputs])
                for back, ids, reader in zip(distances, inputs, readers):
                    answer = tokenizer.decode(reader.generate(ids[-1:], 16, eos=set()))
                    by_distance.setdefault(str(back), []).append(int(key in answer))
                    answers.append({"back": back, "key": key, "answer": answer.strip(),
                                    "found": key in answer})
                    tokens += len(ids)
                    log(f"{mode} {length} tokens, key {back} back: "
                        f"{'ok' if key in answer else 'miss'} ({answer.strip()!r}, key {key}), "
                        f"cache {reader.cached} positions")
            hits = [h for found in by_distance.values() for h in found]
            result["runs"].append({
                "mode": mode, "length": length, "accuracy": round(sum(hits) / len(hits), 3),
                "by_distance": {back: round(sum(f) / len(f), 3)
                                for back, f in by_distance.items()},
                "inside_window": {back: int(back) < window for back in by_distance},
                "seconds": round(time.perf_counter() - started, 1), "input_tokens": tokens,
                "answers": answers})
            del readers, reader
            if engine.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
