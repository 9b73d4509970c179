"""Core timings on this machine: model first load (GGUF conversion) and cached load, CLI
start-up to first output, wall time of summarizing the bundled Alice in Wonderland, and the
engine's batching against plain `transformers.generate` on the same summary prompts.

    python bench/core.py --json [--skip-summary]

Absolute times are this machine's; quote the ratios."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402

ALICE = ROOT / "examples" / "data" / "alice_in_wonderland.txt"
PIECES = 8


def in_subprocess(code: str, env: dict[str, str]) -> float:
    """Seconds a fresh Python process takes to run `code` (which prints its own timing)."""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


LOAD = """
import time; t = time.perf_counter()
from mempipe.engine.local import LocalEngine
from mempipe.config import DEFAULT_MODEL
LocalEngine(DEFAULT_MODEL).model
print(time.perf_counter() - t)
"""


def first_output_seconds(args: list[str], stdin: str, env: dict[str, str]) -> float:
    """Seconds from starting the CLI to its first byte on stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mempipe", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    proc.stdout.read(1)
    seconds = time.perf_counter() - started
    proc.wait()
    return seconds


def batching(env_home: str) -> dict[str, float]:
    """The first PIECES summary prompts of Alice: mempipe's engine (concurrent requests,
    batched) against transformers.generate one request at a time, same model, greedy."""
    import anyio
    import torch

    from mempipe.agents.summarize import PIECE, SYSTEM
    from mempipe.chunking import chunk_spans
    from mempipe.config import DEFAULT_MODEL
    from mempipe.engine import GenerationRequest, Message
    from mempipe.engine.local import LocalEngine

    os.environ["MEMPIPE_HOME"] = env_home
    engine = LocalEngine(DEFAULT_MODEL)
    text = ALICE.read_text()
    spans = chunk_spans(text, 1600, engine.count_tokens)[:PIECES]
    requests = [GenerationRequest(messages=[
        Message(role="system", content=SYSTEM),
        Message(role="user", content=PIECE.format(text=text[a:b], words=150))],
        max_tokens=256, budget=2048) for a, b in spans]

    model, tokenizer = engine.model, engine.tokenizer
    started = time.perf_counter()
    tokens_hf = 0
    for request in requests:
        ids = torch.tensor([engine.prompt_ids(request.messages)])
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=256, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        tokens_hf += out.shape[1] - ids.shape[1]
    hf_seconds = time.perf_counter() - started

    async def together() -> int:
        produced = [0] * len(requests)

        async def one(i: int) -> None:
            produced[i] = (await engine.generate(requests[i])).completion_tokens

        async with anyio.create_task_group() as tg:
            for i in range(len(requests)):
                tg.start_soon(one, i)
        return sum(produced)

    started = time.perf_counter()
    tokens_mp = anyio.run(together)
    mp_seconds = time.perf_counter() - started
    return {"pieces": len(requests), "mempipe_s": round(mp_seconds, 2),
            "hf_sequential_s": round(hf_seconds, 2),
            "speedup": round(hf_seconds / mp_seconds, 2),
            "mempipe_tokens_out": tokens_mp, "hf_tokens_out": tokens_hf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--skip-summary", action="store_true",
                        help="leave out the whole-book summary (the longest part)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as fresh:
        env = {**os.environ, "MEMPIPE_HOME": fresh}
        env.pop("MEMPIPE_MODEL", None)
        log("first load (converts the GGUF file)")
        first = in_subprocess(LOAD, env)
        log("cached load")
        cached = in_subprocess(LOAD, env)
        log("CLI start-up to first output")
        first_output = first_output_seconds(["map 'Say hello.' --max-tokens 8"],
                                            "Hello there.", env)
        result: dict[str, object] = {
            "machine": machine(),
            "device": "cpu",
            "model": "smollm2-135m-instruct",
            "first_load_s": round(first, 2),
            "cached_load_s": round(cached, 2),
            "cli_first_output_s": round(first_output, 2),
        }
        log(f"batching: {PIECES} summary prompts, mempipe vs transformers.generate")
        result["batching"] = batching(fresh)
        if not args.skip_summary:
            log("summarize Alice in Wonderland through the CLI")
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "mempipe", f"summarize {ALICE}"],
                                 env=env, capture_output=True, text=True, check=True).stdout
            result["summarize_alice_s"] = round(time.perf_counter() - started, 1)
            result["summary_words"] = len(out.split())
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
