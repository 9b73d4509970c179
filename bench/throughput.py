"""Engine throughput, mempipe beside its baselines in one run, same model, same prompts:

(a) one request's decoding tokens/s, (b) the aggregate tokens/s of N concurrent `map`
requests (32 here; 32 and 256 on a GPU), over the whole run and over decoding steps only,
(c) prefill tokens/s at 2K, 4K and 7K tokens and Λ-attention reading at 32K, (d) the
longest gap between the tokens of 8 decoding requests while a 4,096-token prompt arrives,
against their usual gap, with chunked prefill and with the whole prompt read in one step.
Baselines: `transformers.generate` one request at a time and on a padded batch, and
llama.cpp (`llama-cpp-python`, the optional `llamacpp` extra) on the default model's GGUF
file; a baseline that is not installed is null, with a note.

    python bench/throughput.py --json [--random-weights] [--tokens 64] [--repeat 3]

Decoding speed is (n - 1) / (time to n tokens - time to the first), so prompt reading is
not counted in it; one request's is the median of --repeat measures (each in
`single_runs`), mempipe's and transformers' taken in turn, llama.cpp's after all of them
(once llama.cpp had run, torch decoded at half speed); prefill is prompt tokens / time to
the first token. On a CPU the same decoding runs are repeated with int8 decoding steps
(`MEMPIPE_QUANTIZE=int8`, keys `int8_*`), and `agreement` says, for a few prompts, how
many tokens of greedy output the int8 engine and, for scale, a float32 engine write before
they part from the exact one."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402

ALICE = ROOT / "examples" / "data" / "alice_in_wonderland.txt"
STORY = "Write a long story about a girl who follows a white rabbit."
MAP = "Say in one sentence what happens in this passage.\n\n{text}"
AGREEMENT = [STORY, "Tell me about the Queen of Hearts.", "Explain why the sky is blue.",
             "Write a commit message for a change that fixes a typo in the README.",
             "Summarize: The Hatter opened his eyes very wide on hearing this; but all he "
             "said was, 'Why is a raven like a writing-desk?'"]


def rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 1) if seconds > 0 and tokens > 0 else None


def median(runs: list[float | None]) -> float | None:
    measured = [r for r in runs if r is not None]
    return round(statistics.median(measured), 1) if measured else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def engine_for(args: argparse.Namespace) -> Any:
    from mempipe.config import DEFAULT_MODEL
    from mempipe.engine.local import LocalEngine

    if not args.random_weights:
        return LocalEngine(args.model or DEFAULT_MODEL)
    # The default model's shape with random weights: speed runs where its file is not.
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mempipe.engine.models import resolve

    source = resolve(args.model or DEFAULT_MODEL) if args.model or not args.config else None
    out = Path(tempfile.mkdtemp(prefix="mempipe-random-"))
    config = LlamaConfig.from_pretrained(args.config or source)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(args.tokenizer or source).save_pretrained(out)
    return LocalEngine(str(out))


def requests_for(engine: Any, count: int, tokens: int) -> list[Any]:
    """`count` map-style prompts over consecutive passages of Alice (~200 tokens each)."""
    from mempipe.engine import GenerationRequest, Message

    words = ALICE.read_text().split()
    return [GenerationRequest(messages=[Message(role="user", content=MAP.format(
        text=" ".join(words[i * 150:(i + 1) * 150])))], max_tokens=tokens, budget=8192)
        for i in range(count)]


def mempipe_decode(engine: Any, tokens: int) -> float | None:
    import anyio

    from mempipe.engine import GenerationRequest, Message

    request = GenerationRequest(messages=[Message(role="user", content=STORY)],
                                max_tokens=tokens, budget=8192)

    async def timed() -> tuple[float, float]:
        """Seconds to the first piece of text and to the last."""
        started, first = time.perf_counter(), 0.0
        async for _ in engine.stream(request):
            first = first or time.perf_counter()
        return first - started, time.perf_counter() - started

    written = anyio.run(engine.generate, request).completion_tokens  # warms up too
    first, total = anyio.run(timed)
    return rate(written - 1, total - first)


def mempipe_aggregate(engine: Any, requests: list[Any]) -> tuple[float | None, float]:
    import anyio

    async def all_at_once() -> int:
        counts: list[int] = []

        async def one(request: Any) -> None:
            counts.append((await engine.generate(request)).completion_tokens)

        async with anyio.create_task_group() as tg:
            for request in requests:
                tg.start_soon(one, request)
        return sum(counts)

    steps, started = engine.batcher.steps, time.perf_counter()
    tokens = anyio.run(all_at_once)
    seconds = time.perf_counter() - started
    step_ms = 1000 * seconds / max(1, engine.batcher.steps - steps)
    return rate(tokens, seconds), round(step_ms, 2)


def lambda_rate(engine: Any, ids: list[int], window: int) -> tuple[float | None, int]:
    """Tokens/s of reading `ids` with Λ attention, and the cache's positions after."""
    from mempipe.engine import torch_thread
    from mempipe.engine.lambda_attention import LambdaReader

    reader = LambdaReader(engine.batcher.runner, window=window)
    started = time.perf_counter()
    torch_thread.run(reader.read, ids)
    return rate(len(ids), time.perf_counter() - started), reader.cached


def stall(engine: Any, prompt: list[int], tokens: int, chunked: bool) -> dict[str, Any]:
    """8 requests decoding when a `prompt`-token request arrives: their usual gap between
    tokens (median, before it came) and the longest while it was read, in ms. Unchunked,
    a step reads the whole prompt, as it did before chunked prefill."""
    import anyio

    from mempipe.engine import GenerationRequest, Message, batcher

    batch = engine.batcher
    arrivals: dict[int, list[float]] = {}  # per decoding request: when each token came
    step, budget = batch.step, batch._chunk

    def watched() -> None:
        step()
        now = time.perf_counter()
        for sequence in batch.running:
            if sequence.request.agent == "decoding" and sequence.tokens:
                times = arrivals.setdefault(id(sequence), [])
                times += [now] * (len(sequence.tokens) - len(times))

    batch.step = watched
    if not chunked:
        batch._chunk = lambda: batcher.PREFILL_TOKENS
    text = engine.tokenizer.decode(prompt)
    long = GenerationRequest(messages=[Message(role="user", content=text)], max_tokens=1,
                             budget=8192)
    window: list[float] = []

    async def run() -> None:
        async def decode(i: int) -> None:
            await engine.generate(GenerationRequest(
                messages=[Message(role="user", content=f"{STORY} Chapter {i + 1}.")],
                max_tokens=tokens, budget=8192, agent="decoding"))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(decode, i)
            while len(arrivals) < 8 or min(len(t) for t in arrivals.values()) < 8:
                await anyio.sleep(0.01)
            window.append(time.perf_counter())
            await engine.generate(long)
            window.append(time.perf_counter())

    try:
        anyio.run(run)
    finally:
        batch.step, batch._chunk = step, budget
    before, during = [], []
    for times in arrivals.values():
        for a, b in itertools.pairwise(times):
            if b <= window[0]:
                before.append(b - a)
            elif a < window[1]:
                during.append(b - a)
    usual, during = statistics.median(before), sorted(during) or [0.0]
    return {"usual_gap_ms": round(1000 * usual, 1), "longest_gap_ms": round(1000 * during[-1], 1),
            "ratio": round(during[-1] / usual, 2),
            "median_gap_during_ms": round(1000 * statistics.median(during), 1),
            "p99_gap_during_ms": round(1000 * during[int(0.99 * (len(during) - 1))], 1),
            "prompt_seconds": round(window[1] - window[0], 2), "tokens_during": len(during)}


def mempipe_prefill(engine: Any, ids: list[int]) -> float | None:
    import anyio

    from mempipe.engine import GenerationRequest, Message

    text = engine.tokenizer.decode(ids)
    request = GenerationRequest(messages=[Message(role="user", content=text)], max_tokens=1,
                                budget=8192)
    prompt = engine.prompt_tokens(request.messages)
    started = time.perf_counter()
    anyio.run(engine.generate, request)
    return rate(prompt, time.perf_counter() - started)


def with_env(name: str, value: str, engine: Any) -> Any:
    """A second engine over the same model file, made with `name` set to `value`."""
    from mempipe.engine.local import LocalEngine

    before = os.environ.get(name)
    os.environ[name] = value
    try:
        other = LocalEngine(engine.name)
        other.batcher  # noqa: B018 - loads the model as `name` asks
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before
    return other


def greedy(engine: Any, tokens: int) -> list[list[int]]:
    """The tokens each AGREEMENT prompt's greedy answer is made of."""
    import anyio

    from mempipe.engine import GenerationRequest, Message

    written = [anyio.run(engine.generate, GenerationRequest(
        messages=[Message(role="user", content=p)], max_tokens=tokens, budget=8192)).text
        for p in AGREEMENT]
    return [engine.tokenizer(text, add_special_tokens=False)["input_ids"] for text in written]


def agreed(exact: list[list[int]], other: list[list[int]]) -> list[int]:
    """Per prompt, the tokens written alike before the first that differs."""
    return [next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), min(len(x), len(y)))
            for x, y in zip(exact, other)]


def agreement(engine: Any, quick: Any, tokens: int) -> dict[str, Any]:
    """How far the int8 engine's and, for scale, a float32 engine's greedy output follow
    the exact engine's."""
    log("agreement of greedy output: int8 and float32 against the exact engine")
    exact = greedy(engine, tokens)
    found: dict[str, Any] = {"tokens": tokens, "int8": agreed(exact, greedy(quick, tokens))}
    if str(engine.model.dtype) != "torch.float32":
        wide = with_env("MEMPIPE_DTYPE", "float32", engine)
        found["float32"] = agreed(exact, greedy(wide, tokens))
    return found


def in_turn(measures: dict[str, Any], repeat: int) -> dict[str, list]:
    """Each measure taken `repeat` times, the measures in turn, so that whatever else the
    machine does meanwhile falls on all of them alike."""
    taken: dict[str, list] = {name: [] for name in measures}
    for _ in range(repeat):
        for name, measure in measures.items():
            taken[name].append(measure())
    return taken


# -- transformers ------------------------------------------------------------------------
def hf_generate(engine: Any, prompts: list[list[int]], new: int) -> tuple[int, float]:
    """Tokens written (up to each row's end of sequence) and seconds, one padded batch,
    run on mempipe's torch thread so that both share one OpenMP pool."""
    from mempipe.engine import torch_thread

    return torch_thread.run(_hf_generate, engine, prompts, new)


def _hf_generate(engine: Any, prompts: list[list[int]], new: int) -> tuple[int, float]:
    import torch

    model, pad = engine.model, engine.tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                        device=model.device)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                             do_sample=False, pad_token_id=pad)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    eos = engine.batcher.eos
    written = 0
    for row in out[:, width:].tolist():
        written += next((i for i, t in enumerate(row) if t in eos), len(row))
    return written, seconds


def hf_decode(engine: Any, tokens: int) -> float | None:
    from mempipe.engine import Message

    prompt = engine.prompt_ids([Message(role="user", content=STORY)])
    hf_generate(engine, [prompt], 2)  # warm-up
    _, first = hf_generate(engine, [prompt], 1)
    n, total = hf_generate(engine, [prompt], tokens)
    return rate(n - 1, total - first)


# -- llama.cpp ---------------------------------------------------------------------------
def llamacpp(threads: int) -> tuple[Any, str]:
    """llama.cpp over the default model's GGUF file, or None and why not."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None, "llama-cpp-python is not installed: pip install '.[llamacpp]'"
    from mempipe.engine.models import default_gguf

    gguf = default_gguf()
    if gguf is None:
        return None, "the default model's GGUF file is not installed"
    return Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_batch=2048,
                 verbose=False), ""


def llamacpp_decode(llm: Any, tokens: int) -> float | None:
    chat = [{"role": "user", "content": STORY}]

    def completion(max_tokens: int) -> tuple[int, float]:
        llm.reset()
        started = time.perf_counter()
        out = llm.create_chat_completion(chat, max_tokens=max_tokens, temperature=0.0)
        return out["usage"]["completion_tokens"], time.perf_counter() - started

    completion(4)  # warm-up
    _, first = completion(1)
    n, total = completion(tokens)
    return rate(n - 1, total - first)


def llamacpp_prefill(llm: Any, text: str) -> float | None:
    prompt = llm.tokenize(text.encode(), add_bos=True)
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    return rate(len(prompt), time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", help="a model directory (default: the bundled model)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the model's shape with random weights (speed only)")
    parser.add_argument("--config", help="with --random-weights: a config.json to shape it")
    parser.add_argument("--tokenizer", help="with --config: the tokenizer's directory")
    parser.add_argument("--tokens", type=int, default=64, help="tokens to write per request")
    parser.add_argument("--repeat", type=int, default=3,
                        help="times each one-request measure is taken, in turn (median)")
    parser.add_argument("--concurrency", default=None,
                        help="comma-separated request counts (default 32; 32,256 on CUDA)")
    parser.add_argument("--prefill", default="2048,4096,7168",
                        help="comma-separated prompt lengths whose prefill is measured")
    parser.add_argument("--lambda-length", type=int, default=32768,
                        help="tokens read with Λ attention (0: not measured)")
    parser.add_argument("--window", type=int, default=4096, help="Λ attention's window")
    parser.add_argument("--stall-prompt", type=int, default=4096,
                        help="tokens of the prompt arriving among 8 decoding requests (0: none)")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()

    import torch

    from mempipe.engine import Message

    engine = engine_for(args)
    log(f"loading {engine.name}")
    engine.batcher  # noqa: B018 - loads the model and sets up the batch
    cuda = engine.device.startswith("cuda")
    counts = [int(c) for c in (args.concurrency or ("32,256" if cuda else "32")).split(",")]
    device = torch.cuda.get_device_name() if cuda else (
        f"{machine()}, {torch.get_num_threads()} torch threads")
    result: dict[str, Any] = {"device": device, "model": engine.name,
                              "dtype": str(engine.model.dtype).removeprefix("torch."),
                              "tokens": args.tokens, "repeat": args.repeat}
    engines = {"": engine}  # by the prefix of their keys
    if not cuda:  # int8 decoding steps are for CPUs
        engines["int8_"] = with_env("MEMPIPE_QUANTIZE", "int8", engine)
    log(f"one request, each measure {args.repeat} times in turn")
    singles = {f"{prefix}single_tok_s": (lambda e=e: mempipe_decode(e, args.tokens))
               for prefix, e in engines.items()}
    if not args.skip_baselines:
        singles["hf_single_tok_s"] = lambda: hf_decode(engine, args.tokens)
    taken = in_turn(singles, args.repeat)
    for prefix, e in engines.items():
        for count in counts:
            log(f"mempipe {prefix or 'exact_'}: {count} concurrent requests")
            decoded, seconds = e.batcher.decoded, e.batcher.decode_seconds
            result[f"{prefix}aggregate{count}_tok_s"], result[f"{prefix}step{count}_ms"] = (
                mempipe_aggregate(e, requests_for(e, count, args.tokens)))
            # the same run's decoding steps only, prompt reading left out
            result[f"{prefix}aggregate{count}_decoding_tok_s"] = rate(
                e.batcher.decoded - decoded, e.batcher.decode_seconds - seconds)
    words = (ALICE.read_text() * 20).split()
    ids = engine.tokenizer(" ".join(words[:40_000]), add_special_tokens=False)["input_ids"]
    mempipe_prefill(engine, ids[:256])  # warm-up
    lengths = [int(n) for n in args.prefill.split(",")]
    for length in lengths:
        log(f"mempipe: prefill {length} tokens")
        result[f"prefill{length}_tok_s"] = mempipe_prefill(engine, ids[:length - 16])
    result["prefill_tok_s"] = result[f"prefill{lengths[0]}_tok_s"]
    first = ids[:lengths[0] - 16]  # the baselines' prefill prompt
    if args.lambda_length:
        log(f"mempipe: Λ attention reads {args.lambda_length} tokens, window {args.window}")
        result[f"lambda{args.lambda_length}_tok_s"], result["lambda_cache_positions"] = (
            lambda_rate(engine, ids[:args.lambda_length], args.window))
    if args.stall_prompt:
        for chunked in (True, False):
            log(f"mempipe: 8 decoding while a {args.stall_prompt}-token prompt arrives "
                f"({'chunked' if chunked else 'read at once'})")
            result[f"stall_{'chunked' if chunked else 'whole'}"] = stall(
                engine, ids[:args.stall_prompt - 16], 4 * args.tokens, chunked)
    if "int8_" in engines:
        result["agreement"] = agreement(engine, engines["int8_"], args.tokens)

    if not args.skip_baselines:
        for count in counts:
            log(f"transformers.generate: padded batch of {count}")
            prompts = [engine.prompt_ids(r.messages)
                       for r in requests_for(engine, count, args.tokens)]
            n, seconds = hf_generate(engine, prompts, args.tokens)
            result[f"hf_batch{count}_tok_s"] = rate(n, seconds)
        log("transformers.generate: prefill")
        prompt = engine.prompt_ids([Message(role="user", content=engine.tokenizer.decode(first))])
        _, seconds = hf_generate(engine, [prompt], 1)
        result["hf_prefill_tok_s"] = rate(len(prompt), seconds)
    # llama.cpp last: once it had run, torch's decoding ran at half speed (its own thread
    # pool, likely; docs/results/throughput-2026-11-23-llamacpp-in-turn.json)
    llm, note = None, "skipped"
    if not args.skip_baselines and args.random_weights:
        note = "random weights: llama.cpp reads the real GGUF only"
    elif not args.skip_baselines:
        llm, note = llamacpp(torch.get_num_threads())
    if llm is not None:
        log(f"llama.cpp: one request {args.repeat} times, prefill")
        taken["llamacpp_single_tok_s"] = [llamacpp_decode(llm, args.tokens)
                                          for _ in range(args.repeat)]
        result["llamacpp_prefill_tok_s"] = llamacpp_prefill(llm, engine.tokenizer.decode(first))
        result["llamacpp_version"] = __import__("llama_cpp").__version__
    else:
        result["llamacpp_single_tok_s"], result["llamacpp_note"] = None, note
    result |= {name: median(runs) for name, runs in taken.items()}
    result["single_runs"] = taken

    llama_single, main_count = result.get("llamacpp_single_tok_s"), counts[0]
    result["ratios"] = {
        "prefill_vs_hf": ratio(result["prefill_tok_s"], result.get("hf_prefill_tok_s"))}
    for length in lengths[1:]:
        result["ratios"][f"prefill{length}_vs_{lengths[0]}"] = ratio(
            result[f"prefill{length}_tok_s"], result["prefill_tok_s"])
    if args.lambda_length:
        result["ratios"][f"lambda{args.lambda_length}_vs_prefill{lengths[0]}"] = ratio(
            result[f"lambda{args.lambda_length}_tok_s"], result["prefill_tok_s"])
    for prefix in engines:
        result["ratios"] |= {
            f"{prefix}single_vs_llamacpp": ratio(result[f"{prefix}single_tok_s"], llama_single),
            f"{prefix}single_vs_hf": ratio(result[f"{prefix}single_tok_s"],
                                           result.get("hf_single_tok_s")),
            f"{prefix}aggregate{main_count}_vs_llamacpp_single": ratio(
                result[f"{prefix}aggregate{main_count}_tok_s"], llama_single),
            f"{prefix}aggregate{main_count}_decoding_vs_llamacpp_single": ratio(
                result[f"{prefix}aggregate{main_count}_decoding_tok_s"], llama_single)}
        for count in counts:
            result["ratios"][f"{prefix}aggregate{count}_vs_hf_batch{count}"] = ratio(
                result[f"{prefix}aggregate{count}_tok_s"], result.get(f"hf_batch{count}_tok_s"))
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
