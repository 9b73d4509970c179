"""Passkey retrieval far beyond the model's trained positions: a 5-digit key hidden at
evenly spaced depths in filler text (the bundled books), read in one pass with Λ-shaped
attention and, where it fits, with plain attention; accuracy per length and depth.

    python bench/passkey.py --json [--lengths 8192,32768,131072] [--depths 10]

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

from bench.report import log  # noqa: E402

BOOKS = [ROOT / "examples" / "data" / "alice_in_wonderland.txt",
         ROOT / "examples" / "data" / "pride_and_prejudice.txt"]
TASK = ("There is an important piece of information hidden inside a lot of irrelevant text. "
        "Find it and memorize it. I will quiz you about it.\n\n")
NEEDLE = "\n\nThe pass key is {key}. Remember it. {key} is the pass key.\n\n"
QUESTION = "\n\nWhat is the pass key?"


def prompt_ids(engine: Any, filler: list[int], length: int, depth: float,
               key: str) -> list[int]:
    """One user turn in the model's chat framing: TASK, filler with the needle at `depth`
    (0 = start, 1 = end), QUESTION; about `length` tokens in all."""
    from mempipe.engine import Message

    tokenizer = engine.tokenizer
    frame = engine.prompt_ids([Message(role="user", content=TASK + NEEDLE + QUESTION)])
    room = length - len(frame)
    body = (filler * (room // len(filler) + 1))[:room]
    at = int(room * depth)
    text = (TASK + tokenizer.decode(body[:at]) + NEEDLE.format(key=key)
            + tokenizer.decode(body[at:]) + QUESTION)
    return engine.prompt_ids([Message(role="user", content=text)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lengths", default="8192,32768,131072")
    parser.add_argument("--depths", type=int, default=10, help="depths per length")
    parser.add_argument("--window", type=int, default=4096, help="Λ attention's window")
    parser.add_argument("--plain-max", type=int, default=8192,
                        help="longest input read with plain attention")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from mempipe.config import DEFAULT_MODEL
    from mempipe.engine.lambda_attention import LambdaReader
    from mempipe.engine.local import LocalEngine

    engine = LocalEngine(DEFAULT_MODEL)
    runner, tokenizer = engine.batcher.runner, engine.tokenizer
    filler = tokenizer("\n\n".join(b.read_text() for b in BOOKS),
                       add_special_tokens=False)["input_ids"]
    rng = random.Random(args.seed)
    lengths = [int(n) for n in args.lengths.split(",")]
    depths = [round((i + 0.5) / args.depths, 3) for i in range(args.depths)]
    result: dict[str, Any] = {
        "benchmark": "passkey", "model": engine.name, "device": engine.device,
        "dtype": str(engine.model.dtype).removeprefix("torch."), "window": args.window,
        "trained_positions": runner.max_positions, "depths": depths, "runs": []}
    for length in lengths:
        for mode in ("lambda", "plain"):
            if mode == "plain" and length > args.plain_max:
                continue
            window = args.window if mode == "lambda" else length + 256
            hits: list[bool] = []
            started = time.perf_counter()
            for depth in depths:
                key = f"{rng.randrange(10000, 100000)}"
                ids = prompt_ids(engine, filler, length, depth, key)
                reader = LambdaReader(runner, window=window)
                written = reader.generate(ids, 16, eos=set())
                answer = tokenizer.decode(written)
                hits.append(key in answer)
                log(f"{mode} {length} tokens, depth {depth}: {'ok' if hits[-1] else 'miss'} "
                    f"({answer.strip()!r}, key {key}), peak cache {reader.cached} positions")
            seconds = time.perf_counter() - started
            result["runs"].append({
                "mode": mode, "length": length, "accuracy": round(sum(hits) / len(hits), 3),
                "by_depth": [int(h) for h in hits],
                "tokens_per_s": round(length * len(depths) / seconds, 1)})
            del reader
            if engine.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
