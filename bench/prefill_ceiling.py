"""How fast prompt reading can be on this machine with torch's own kernels, beside the
engine's measured rates in the same run.

Per token and layer, reading costs the block's matrix products (linear in the prompt's
length) and its attention (growing with the keys each query sees). Timed here on the
default model's shapes (random weights: only time is measured): one block's linear layers
over T tokens, and torch's fused causal attention (`scaled_dot_product_attention`, which
never holds the score matrix) over T queries; for Λ reading, a chunk of queries over the
window's keys with the window mask. The best rate ratio those kernels allow is
cost(2K) / cost(T) per token: the engine cannot read a long prompt faster than its
attention kernel, relative to a short one. The engine's own rates (`bench/throughput.py`'s
measures) are taken in the same run.

    python bench/prefill_ceiling.py --json [--lengths 2048,4096,7168] [--lambda-length 32768]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402
from bench.throughput import ALICE, engine_for, lambda_rate, mempipe_prefill, ratio  # noqa: E402

REPEAT = 3  # each kernel timing is the best of this many


def best_seconds(run: Any) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def block_costs(config: Any, tokens: int, keys: int, window: int | None) -> dict[str, float]:
    """Seconds for one block's linear layers over `tokens` tokens and for fused attention
    of those queries: causal over themselves (window None), or each over the `window`
    keys before it out of `keys` (Λ reading's chunk)."""
    import torch
    import torch.nn.functional as F

    hidden, inner = config.hidden_size, config.intermediate_size
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    width = hidden // heads
    dtype = torch.bfloat16
    weights = [torch.randn(hidden, n, dtype=dtype) * 0.02
               for n in (hidden + 2 * kv_heads * width, hidden, 2 * inner)]
    down = torch.randn(inner, hidden, dtype=dtype) * 0.02
    x = torch.randn(tokens, hidden, dtype=dtype)

    def linear() -> None:
        *_, gate_up = [x @ w for w in weights]  # q, k, v; the output projection; gate, up
        gate, up = gate_up.chunk(2, -1)
        F.silu(gate).mul(up) @ down

    q = torch.randn(1, heads, tokens, width, dtype=dtype)
    k = torch.randn(1, kv_heads, keys, width, dtype=dtype)
    v = torch.randn(1, kv_heads, keys, width, dtype=dtype)
    if window is None:
        def attention() -> None:
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    else:
        position = torch.arange(keys - tokens, keys)[:, None]
        distance = position - torch.arange(keys)
        seen = (distance >= 0) & (distance < window)

        def attention() -> None:
            F.scaled_dot_product_attention(q, k, v, attn_mask=seen, enable_gqa=True)

    with torch.inference_mode():
        return {"linear_s": best_seconds(linear), "attention_s": best_seconds(attention)}


def per_token_ms(costs: dict[str, float], tokens: int, layers: int) -> float:
    return (costs["linear_s"] + costs["attention_s"]) / tokens * layers * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", help="a model directory (default: the bundled model)")
    parser.add_argument("--lengths", default="2048,4096,7168",
                        help="comma-separated prompt lengths; the first is the reference")
    parser.add_argument("--lambda-length", type=int, default=32768,
                        help="tokens the engine reads with Λ attention (0: not measured)")
    parser.add_argument("--window", type=int, default=4096, help="Λ attention's window")
    parser.add_argument("--chunk", type=int, default=512, help="Λ reading's queries a pass")
    parser.add_argument("--skip-engine", action="store_true",
                        help="kernels only, not the engine's own rates")
    args = parser.parse_args()
    args.random_weights, args.config, args.tokenizer = False, None, None

    import torch

    engine = engine_for(args)
    log(f"loading {engine.name}")
    engine.batcher  # noqa: B018 - loads the model
    config = engine.model.config
    layers = config.num_hidden_layers
    lengths = [int(n) for n in args.lengths.split(",")]
    result: dict[str, Any] = {
        "benchmark": "prefill ceiling: torch's kernels on the default model's shapes",
        "device": f"{machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "dtype": "bfloat16", "model": engine.name,
        "kernels": {}, "engine": {}, "ratios": {}}
    for length in lengths:
        log(f"kernels: {length} tokens, causal")
        costs = block_costs(config, length, length, None)
        result["kernels"][f"prefill{length}"] = {
            **{k: round(v, 4) for k, v in costs.items()},
            "ms_per_token": round(per_token_ms(costs, length, layers), 3)}
    if args.lambda_length:
        log(f"kernels: a {args.chunk}-query chunk over a {args.window}-token window")
        keys = args.window + args.chunk
        costs = block_costs(config, args.chunk, keys, args.window)
        result["kernels"][f"lambda{args.lambda_length}"] = {
            **{k: round(v, 4) for k, v in costs.items()},
            "ms_per_token": round(per_token_ms(costs, args.chunk, layers), 3)}
    reference = result["kernels"][f"prefill{lengths[0]}"]["ms_per_token"]
    for name, kernel in result["kernels"].items():
        kernel["tok_s"] = round(1000 / kernel["ms_per_token"], 1)
        result["ratios"][f"ceiling_{name}_vs_{lengths[0]}"] = round(
            reference / kernel["ms_per_token"], 2)

    if not args.skip_engine:
        words = (ALICE.read_text() * 20).split()  # the text bench/throughput.py reads
        ids = engine.tokenizer(" ".join(words[:40_000]), add_special_tokens=False)["input_ids"]
        mempipe_prefill(engine, ids[:256])  # warm-up
        for length in lengths:
            log(f"engine: prefill {length} tokens")
            result["engine"][f"prefill{length}_tok_s"] = mempipe_prefill(engine, ids[:length - 16])
        if args.lambda_length:
            log(f"engine: Λ attention reads {args.lambda_length} tokens")
            result["engine"][f"lambda{args.lambda_length}_tok_s"], _ = lambda_rate(
                engine, ids[:args.lambda_length], args.window)
        first = result["engine"][f"prefill{lengths[0]}_tok_s"]
        for name, rate in result["engine"].items():
            result["ratios"][f"engine_{name.removesuffix('_tok_s')}_vs_{lengths[0]}"] = \
                ratio(rate, first)
    print(json.dumps(result, indent=1 if args.json else None))


if __name__ == "__main__":
    main()
