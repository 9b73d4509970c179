"""Tier 2: a passage's attention keys and values, computed once, compressed and stored,
so reading it again costs no prefill (Memory³).

A memory is computed in the framing it is read in (`SYSTEM`, then `BEFORE` and the
passage in the user's message), keys before rotation so it can sit at any position. Three
knobs compress it, named together as one setting (`int8-32of128-all`): the bits of each
number (fp16; int8 or int4 with one fp16 scale per vector), the tokens kept per key head
out of each 128 (those that received the most attention inside the passage, Memory³'s
rule), and the layers that keep it (all, or the first half). A blob is a safetensors file
that names the weights it was computed with; a blob from other weights is never read."""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any, Literal

from pydantic import BaseModel, Field

from mempipe.engine.base import MEMORIES, Message
from mempipe.errors import UsageError

SYSTEM = "You answer questions about a text briefly, using only the text."
BEFORE = "Text:\n"  # the passage follows on its own line: it is tokenised on its own
FORMAT = "1"
_NAME = re.compile(r"(fp16|int8|int4)-(\d+)of128-(all|half)")


class Compression(BaseModel, frozen=True):
    """How a memory is kept: see the module's docstring."""

    bits: Literal[16, 8, 4] = 8
    keep: int = Field(default=128, ge=1, le=128)
    layers: Literal["all", "half"] = "all"

    @property
    def name(self) -> str:
        kind = "fp16" if self.bits == 16 else f"int{self.bits}"
        return f"{kind}-{self.keep}of128-{self.layers}"

    @classmethod
    def parse(cls, name: str) -> Compression:
        match = _NAME.fullmatch(name)
        if not match or not 1 <= int(match[2]) <= 128:
            raise UsageError(f"bad KV setting {name!r}: expected like int8-32of128-all "
                             "(fp16|int8|int4, 1..128 tokens of 128, all|half layers)")
        bits = 16 if match[1] == "fp16" else int(match[1][3:])
        return cls(bits=bits, keep=int(match[2]), layers=match[3])


DEFAULT = Compression(bits=8, keep=128, layers="all")  # see docs/benchmarks.md (kv_memory)


def prompt(question: str, after: str = "") -> str:
    """The user's message that reads memories: they go where `MEMORIES` is; `after` is
    text read with them (passages with no stored memory)."""
    return f"{BEFORE}{MEMORIES}{after}\n\nQuestion: {question}\nAnswer in a few words."


def framing(question: str = "", after: str = "") -> list[Any]:
    """The messages memories are computed in and read in."""
    return [Message(role="system", content=SYSTEM),
            Message(role="user", content=prompt(question, after))]


def framing_as_text(question: str, text: str) -> list[Any]:
    """The same messages with the passages' `text` where their memories would go: what
    reading them as text (tier 1) looks like, token for token."""
    system, user = framing(question)
    return [system, user.model_copy(update={"content": user.content.replace(MEMORIES, text)})]


def engine_for_kv(engine: Any) -> Any:
    """`engine`, if it can compute and read key/value memories, read adapters and train
    them (all three need the model's own forward pass)."""
    if not {"memories", "adapters", "training"} <= engine.capabilities:
        raise UsageError(f"--tier kv, --tier params and memory training need a local model; "
                         f"{engine.name} cannot hold memories or adapters")
    return engine


def compress(state: Any, setting: Compression, model: str) -> bytes:
    """One passage's `PassageState` as a blob in `setting`, naming the weights `model`."""
    import torch
    from safetensors.torch import save

    layers, _, tokens, _ = state.keys.shape
    kept_layers = layers if setting.layers == "all" else max(1, layers // 2)
    kept = tokens if setting.keep == 128 else max(1, math.ceil(tokens * setting.keep / 128))
    received = state.received[:kept_layers].float()
    chosen = received.topk(kept, dim=-1).indices.sort(dim=-1).values  # (layers, heads, kept)
    index = chosen[..., None].expand(-1, -1, -1, state.keys.shape[-1])
    tensors = {"positions": chosen.to(torch.int16)}
    for name, full in (("keys", state.keys), ("values", state.values)):
        tensors.update(_quantize(name, full[:kept_layers].gather(2, index).float(),
                                 setting.bits))
    metadata = {"format": FORMAT, "model": model, "tokens": str(tokens),
                "setting": setting.name}
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def load(blob: bytes, model: str) -> Any:
    """The `KVMemory` in `blob`, which must come from the weights named `model`."""
    from safetensors.torch import load as load_tensors

    from mempipe.engine.memories import KVMemory  # torch: loaded when a memory is first read

    meta = metadata(blob)
    if meta.get("model") != model:
        raise UsageError(f"this memory was computed by other weights ({meta.get('model')}, "
                         f"not {model}): remember it again with --tier kv")
    tensors = load_tensors(blob)
    bits = int(meta["setting"].split("-")[0].removeprefix("fp").removeprefix("int"))
    keys, values = _dequantize("keys", tensors, bits), _dequantize("values", tensors, bits)
    return KVMemory(keys=list(keys), values=list(values),
                    positions=tensors["positions"].long(), tokens=int(meta["tokens"]))


def metadata(blob: bytes) -> dict[str, str]:
    """A blob's header: format, model, tokens, setting."""
    if len(blob) < 8:
        raise ValueError("not a memory blob")
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + size]).get("__metadata__", {})


def _quantize(name: str, x: Any, bits: int) -> dict[str, Any]:
    """x (..., d) as fp16, or as int8/int4 (two per byte) with an fp16 scale per vector."""
    import torch

    if bits == 16:
        return {name: x.to(torch.float16)}
    top = 2 ** (bits - 1) - 1  # 127 or 7
    scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-8) / top
    q = (x / scale).round().clamp(-top, top)
    if bits == 4:  # 1..15, two nibbles a byte
        q = (q + 8).to(torch.uint8)
        return {name: q[..., 0::2] | (q[..., 1::2] << 4), f"{name}_scale": scale.half()}
    q = q.to(torch.int8)
    return {name: q, f"{name}_scale": scale.half()}


def _dequantize(name: str, tensors: dict[str, Any], bits: int) -> Any:
    import torch

    q = tensors[name]
    if bits == 16:
        return q.float()
    if bits == 4:
        low, high = (q & 15).to(torch.int8) - 8, (q >> 4).to(torch.int8) - 8
        q = torch.stack((low, high), dim=-1).flatten(-2)
    return q.float() * tensors[f"{name}_scale"].float()


def size(config: Any, setting: Compression, tokens: int) -> int:
    """The bytes a memory in `setting` of a passage of `tokens` takes, for a model of
    `config` (a transformers config): keys and values with their scales, the kept
    positions, and the blob's header (under 512 bytes)."""
    layers = config.num_hidden_layers if setting.layers == "all" else \
        max(1, config.num_hidden_layers // 2)
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    vector = head * setting.bits / 8 + (2 if setting.bits < 16 else 0)
    kept = tokens if setting.keep == 128 else math.ceil(tokens * setting.keep / 128)
    return int(layers * config.num_key_value_heads * (2 * vector + 2) * kept) + 512
