"""Key/value memories (tier 2) as the engine reads them: passages whose keys and values
were computed once, put into a row's cache as a prefix instead of being read again.

A prompt that takes memories holds `MEMORIES` once in a message; the chat framing before
it (the head) is read like any prompt and cached per framing, the memories follow it in
the order given, and the rest of the prompt (the tail) is read after them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from mempipe.engine.llama import LlamaRunner, Prefix


@dataclass
class KVMemory:
    """One passage's attention state. Per kept layer (the first `len(keys)`), keys before
    rotation and values (kv_heads, kept, head_dim); `positions` (layers, kv_heads, kept):
    each kept token's place in the passage, `tokens` long."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    positions: torch.Tensor
    tokens: int

    @property
    def layers(self) -> int:
        return len(self.keys)


@dataclass
class PassageState:
    """What reading a passage left in attention, before compression: keys (unrotated) and
    values (layers, kv_heads, tokens, head_dim), and the attention each key received from
    the passage's own tokens (layers, kv_heads, tokens)."""

    keys: torch.Tensor
    values: torch.Tensor
    received: torch.Tensor


def read_passages(runner: LlamaRunner, head: list[int], passages: list[list[int]],
                  batch: int = 8) -> list[PassageState]:
    """Each passage read after `head` on its own (Memory³: memories do not see each
    other), a few at a time, longest together."""
    order = sorted(range(len(passages)), key=lambda i: -len(passages[i]))
    states: list[PassageState | None] = [None] * len(passages)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            group = order[start:start + batch]
            rows = [head + passages[i] for i in group]
            width = len(rows[0])
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=runner.device)
            lengths = torch.tensor([len(r) for r in rows], device=runner.device)
            keys, values, received = runner.encode(ids, lengths, since=len(head))
            for row, i in enumerate(group):
                span = slice(len(head), len(head) + len(passages[i]))
                states[i] = PassageState(
                    keys=torch.stack([k[row, :, span] for k in keys]),
                    values=torch.stack([v[row, :, span] for v in values]),
                    received=received[row, :, :, span])
    return [s for s in states if s is not None]


def build_prefix(runner: LlamaRunner, head: tuple[list[torch.Tensor], list[torch.Tensor]],
                 memories: list[KVMemory]) -> Prefix:
    """The cache prefix for a head (its rotated keys and values per layer) followed by
    `memories` in order, each rotated to the positions it now takes: per layer, every
    memory in one rotation, from one table of angles (computing them per memory and
    layer took a third of the time to the first token)."""
    head_keys, head_values = head
    length = head_keys[0].shape[1]
    layers = min(m.layers for m in memories)
    starts = [length + sum(m.tokens for m in memories[:i]) for i in range(len(memories))]
    span = length + sum(m.tokens for m in memories)
    table = runner.rotations(span)
    keys, values = [], []
    for layer in range(len(runner.blocks)):
        if layer < layers:
            where = torch.cat([m.positions[layer] + at for m, at in zip(memories, starts)], -1)
            k = runner.rotate(torch.cat([m.keys[layer] for m in memories], 1).to(runner.dtype),
                              where.to(runner.device), table)
            v = torch.cat([m.values[layer] for m in memories], 1).to(runner.dtype)
        else:  # unseen by this layer (masked); zeros keep the slots in step
            slots = sum(m.keys[0].shape[1] for m in memories)
            shape = (*memories[0].keys[0].shape[:1], slots, memories[0].keys[0].shape[-1])
            k = v = torch.zeros(shape, dtype=runner.dtype, device=runner.device)
        keys.append(torch.cat([head_keys[layer], k], dim=1))
        values.append(torch.cat([head_values[layer], v], dim=1))
    return Prefix(keys=keys, values=values, head=length, span=span, layers=layers)


def read_head(runner: LlamaRunner, head: list[int]
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A framing's keys (rotated at 0..) and values per layer, (kv_heads, tokens, d)."""
    with torch.inference_mode():
        ids = torch.tensor([head], device=runner.device)
        keys, values, _ = runner.encode(ids, torch.tensor([len(head)]), since=len(head))
        where = torch.arange(len(head), device=runner.device)
        return ([runner.rotate(k[0], where.expand(k.shape[1], -1)) for k in keys],
                [v[0] for v in values])


def fingerprint(runner: LlamaRunner) -> str:
    """Names the weights, not the model's name: a sample of every layer's norms, the
    embedding and the output, rounded to bf16 so a float32 and a bf16 load agree."""
    digest = hashlib.sha256()
    tensors = [runner.embed[::251], runner.norm, runner.lm_head[::257]]
    for block in runner.blocks:
        tensors += [block.attn_norm, block.mlp_norm, block.qkv[::97]]
    for tensor in tensors:
        digest.update(tensor.detach().to(torch.bfloat16).view(torch.int16).cpu().numpy()
                      .tobytes())
    return digest.hexdigest()[:16]
