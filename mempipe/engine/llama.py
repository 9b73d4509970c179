"""A lean forward pass for Llama-family models over a slot KV cache.

transformers' `generate` spends most of a small model's decoding step in Python and
per-call set-up; this pass does one fused matmul for q/k/v and one for gate/up per layer,
writes keys and values straight into a preallocated cache (one row per running sequence),
and lets SDPA do attention. The weights are the loaded model's own tensors, so nothing is
copied: the fused q/k/v and gate/up weights replace the model's, which become views of
them."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mempipe.engine.int8 import Int8
from mempipe.engine.lora import Adapter, RowAdapters, adapted

ARCHITECTURES = ("llama", "mistral", "qwen2")  # the same block; qwen2 adds a q/k/v bias
GROW = 256  # cache positions are added in steps of this many


@dataclass
class Block:
    """One decoder layer's weights, q/k/v and gate/up fused; `int8` holds int8 copies of
    the projections (by name) where decoding steps read them."""

    attn_norm: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    mlp_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor
    int8: dict[str, Int8] = field(default_factory=dict)

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x (n, t, in) through the projection `name`: its int8 copy when there is one and
        t is 1 (a decoding step), else the weight itself, as always under autograd (the
        int8 kernel has no derivative: training reads the weights)."""
        bias = self.qkv_bias if name == "qkv" else None
        step = x.shape[1] == 1 and not torch.is_grad_enabled()
        quick = self.int8.get(name) if step else None
        if quick is None:
            return F.linear(x, getattr(self, name), bias)
        return quick(x) if bias is None else quick(x) + bias


@dataclass
class Prefix:
    """Keys (rotated to where they sit) and values put in a row's cache instead of being
    computed there: a chat framing's head, then recalled memories (tier 2). Per layer,
    (kv_heads, slots, head_dim). The memories take slots head..slots but stand for
    `span - head` positions of text (sparse memories keep fewer tokens than they read), and
    only the first `layers` layers see them."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    head: int
    span: int
    layers: int

    @property
    def slots(self) -> int:
        return int(self.keys[0].shape[1])


def supports(model: Any) -> bool:
    config = model.config
    return (config.model_type in ARCHITECTURES and not getattr(config, "mlp_bias", False)
            and getattr(config, "hidden_act", "silu") == "silu")


def _fuse(*linears: Any) -> torch.Tensor:
    """One weight for several linear layers; each layer's weight becomes a view of it."""
    fused = torch.cat([layer.weight.data for layer in linears])
    start = 0
    for layer in linears:
        rows = layer.weight.shape[0]
        layer.weight.data = fused[start:start + rows]
        start += rows
    return fused


def _fuse_bias(*linears: Any) -> torch.Tensor | None:
    if linears[0].bias is None:
        return None
    return torch.cat([layer.bias.data for layer in linears])


class LlamaRunner:
    """The model's forward pass over `rows` of a shared KV cache.

    The cache holds, for every layer, keys (rotated) and values of shape
    (rows, kv_heads, positions, head_dim). Each running sequence owns one row; `forward`
    appends tokens to a range of rows at per-row positions and returns the last layer's
    hidden states, so one call serves both prefill (many tokens) and decoding (one)."""

    def __init__(self, model: Any) -> None:
        config = model.config
        model.requires_grad_(False)  # the base weights are never trained (adapters are)
        self.model = model
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.max_positions = int(config.max_position_embeddings)
        self.rotary = model.model.rotary_emb
        self.embed = model.model.embed_tokens.weight
        self.norm = model.model.norm.weight
        self.lm_head = model.lm_head.weight
        self.blocks = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.blocks.append(Block(
                attn_norm=layer.input_layernorm.weight,
                qkv=_fuse(attn.q_proj, attn.k_proj, attn.v_proj),
                qkv_bias=_fuse_bias(attn.q_proj, attn.k_proj, attn.v_proj),
                out=attn.o_proj.weight,
                mlp_norm=layer.post_attention_layernorm.weight,
                gate_up=_fuse(mlp.gate_proj, mlp.up_proj),
                down=mlp.down_proj.weight,
            ))
        self.device, self.dtype = self.embed.device, self.embed.dtype
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows, self.capacity = 0, 0
        self.clean: list[int] = []  # per row: its positions 0..clean hold numbers (`reserve`)
        self.adapters: list[Adapter | None] = []  # per row: the LoRA adapter it reads with
        self.head_int8: Int8 | None = None
        self._no_rows()

    def quantize(self) -> None:
        """Decoding steps read int8 copies of the projections and the output head
        (`int8.py`); everything else keeps reading the model's weights."""
        for block in self.blocks:
            block.int8 = {name: Int8.of(getattr(block, name))
                          for name in ("qkv", "out", "gate_up", "down")}
        self.head_int8 = Int8.of(self.lm_head)

    def private(self) -> LlamaRunner:
        """The same weights over a cache of its own, for reading outside the batch."""
        other = copy.copy(self)
        other.release()
        return other

    # -- the cache -----------------------------------------------------------------------
    @property
    def bytes_per_position(self) -> int:
        """Cache bytes one sequence's token takes across all layers."""
        size = torch.tensor([], dtype=self.dtype).element_size()
        return 2 * len(self.blocks) * self.kv_heads * self.head_dim * size

    def reserve(self, rows: int, positions: int) -> None:
        """Grow the cache to at least `rows` x `positions`, keeping what it holds.

        The new space is left unwritten: allocating and zeroing a long prompt's positions
        for every row at once stalled every decoding row for as long. Masked slots are
        still multiplied in attention, so they must hold numbers, never NaN: `_clean`
        zeroes a row's positions as its reading first reaches them."""
        positions = min(self.max_positions, -(-positions // GROW) * GROW)
        if rows <= self.rows and positions <= self.capacity:
            return
        rows, positions = max(rows, self.rows), max(positions, self.capacity)
        shape = (rows, self.kv_heads, positions, self.head_dim)
        held = max(self.clean, default=0)
        for cache in (self.keys, self.values):
            for i in range(len(self.blocks)):
                grown = torch.empty(shape, dtype=self.dtype, device=self.device)
                if cache[i:]:
                    grown[:self.rows, :, :held] = cache[i][:, :, :held]
                    cache[i] = grown
                else:
                    cache.append(grown)
        for name in ("shift", "memory_start", "memory_end", "memory_layers"):
            grown = torch.zeros(rows, dtype=torch.long, device=self.device)
            grown[:self.rows] = getattr(self, name)
            setattr(self, name, grown)
        self.memory_layers[self.rows:] = len(self.blocks)
        self.adapters += [None] * (rows - self.rows)
        self.clean += [0] * (rows - self.rows)
        self.rows, self.capacity = rows, positions

    def _clean(self, first: int, n: int, end: int) -> None:
        """Zero rows first..first+n from their `clean` to `end` before anything writes or
        reads there, so that nothing written ever lies past a row's `clean`. Only the rows
        a forward pass reads: zeroing every row as one reads on cost each step a pass over
        all of them."""
        behind = [r for r in range(first, first + n) if self.clean[r] < end]
        for start in sorted({self.clean[r] for r in behind}):
            rows = [r for r in behind if self.clean[r] == start]
            index: slice | torch.Tensor = slice(rows[0], rows[-1] + 1) \
                if rows[-1] - rows[0] == len(rows) - 1 else torch.tensor(rows, device=self.device)
            for cache in (self.keys, self.values):
                for layer in cache:
                    layer[index, :, start:end] = 0
        for r in behind:
            self.clean[r] = end

    def move(self, source: int, target: int, length: int) -> None:
        """Copy one row's first `length` positions into another row."""
        for cache in (self.keys, self.values):
            for layer in cache:
                layer[target, :, :length] = layer[source, :, :length]
        self.clean[target] = max(self.clean[target], length)
        for row in (self.shift, self.memory_start, self.memory_end, self.memory_layers):
            row[target] = row[source]
        self.adapters[target] = self.adapters[source]

    def release(self) -> None:
        self.keys, self.values, self.rows, self.capacity, self.clean = [], [], 0, 0, []
        self.adapters = []
        self._no_rows()

    def _no_rows(self) -> None:
        # Per row: what its RoPE positions add to its cache slots (a sparse memory holds
        # fewer slots than the positions it stands for), and its memories' slots with the
        # number of layers that see them.
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        self.shift, self.memory_start, self.memory_end, self.memory_layers = (
            empty, empty, empty, empty)

    def attach(self, row: int, adapter: Adapter | None) -> None:
        """Read `row` with `adapter` (None: the base weights) from its next token on."""
        self.adapters[row] = adapter

    def _row_adapters(self, first: int, n: int) -> RowAdapters:
        """Each adapter among rows first..first+n, with the rows (0..n) it serves."""
        served: dict[int, tuple[Adapter, list[int]]] = {}
        for i, adapter in enumerate(self.adapters[first:first + n]):
            if adapter is not None:
                served.setdefault(id(adapter), (adapter, []))[1].append(i)
        return [(adapter, torch.tensor(rows, device=self.device))
                for adapter, rows in served.values()]

    def inject(self, row: int, prefix: Prefix | None) -> int:
        """Start `row` with `prefix` in its cache (None: empty); the slots it fills."""
        if prefix is None:
            self.shift[row], self.memory_start[row], self.memory_end[row] = 0, 0, 0
            self.memory_layers[row] = len(self.blocks)
            return 0
        slots = prefix.slots
        for keys, values, k, v in zip(self.keys, self.values, prefix.keys, prefix.values):
            keys[row, :, :slots] = k
            values[row, :, :slots] = v
        self.clean[row] = max(self.clean[row], slots)
        self.shift[row] = prefix.span - slots
        self.memory_start[row], self.memory_end[row] = prefix.head, slots
        self.memory_layers[row] = prefix.layers
        return slots

    # -- the forward pass ----------------------------------------------------------------
    def forward(self, first: int, ids: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Append `ids` (n, t) to cache rows first..first+n at positions starts (n,) onward;
        return the last layer's normalised hidden states (n, t, hidden).

        A first chunk uses SDPA's causal kernel; later chunks and decoding steps `attend`
        with a mask of the keys each query may see."""
        n, t = ids.shape
        positions = starts[:, None] + torch.arange(t, device=self.device)  # (n, t) slots
        end = int(starts.max()) + t
        self._clean(first, n, end)
        shift = self.shift[first:first + n, None]
        cos, sin = self.rotary(self.embed[:1], positions + shift)  # (n, t, head_dim) each
        cos, sin = cos[:, None], sin[:, None]
        rows = torch.arange(first, first + n, device=self.device)[:, None]
        causal = t > 1 and end == t  # a first chunk: plain causal attention
        if not causal:  # a query sees the keys at or before its own position in its row
            unseen = torch.arange(end, device=self.device) > positions[:, :, None]
            hidden_from = self._memories_hidden(first, n, end)
        adapters = self._row_adapters(first, n)
        h = F.embedding(ids, self.embed)
        for i, (block, keys, values) in enumerate(zip(self.blocks, self.keys, self.values)):
            q, k, v = self.project(block, h, adapters, i)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            keys[rows, :, positions] = k.transpose(1, 2)  # (n, t, kv_heads, head_dim)
            values[rows, :, positions] = v.transpose(1, 2)
            seen_keys = keys[first:first + n, :, :end]
            seen_values = values[first:first + n, :, :end]
            if causal:
                attended = F.scaled_dot_product_attention(
                    q, seen_keys, seen_values, is_causal=True,
                    enable_gqa=self.kv_heads != self.heads)
            else:
                mask = unseen if hidden_from is None else unseen | hidden_from(i)
                attended = attend(q, seen_keys, seen_values, ~mask[:, None])
            h = self.finish(block, h, attended, adapters, i)
        return _rms_norm(h, self.norm, self.eps)

    def _memories_hidden(self, first: int, n: int, end: int) -> Any:
        """None when every row's memories reach every layer; else, for a layer, the mask
        (n, 1, end) of the memory slots that layer does not see."""
        layers = self.memory_layers[first:first + n]
        if bool((layers >= len(self.blocks)).all()):
            return None
        slot = torch.arange(end, device=self.device)
        inside = ((slot >= self.memory_start[first:first + n, None])
                  & (slot < self.memory_end[first:first + n, None]))  # (n, end)
        return lambda layer: (inside & (layer >= layers)[:, None])[:, None]

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor, since: int
               ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Read `ids` (n, t), right-padded to `lengths`, from position 0 without a cache.
        Per layer: keys before rotation and values (n, kv_heads, t, d); and the attention
        every key received from the real queries at positions since.. (n, layers, kv_heads,
        t), summed over them and over the query heads sharing its key head."""
        n, t = ids.shape
        steps = torch.arange(t, device=self.device)
        cos, sin = self.rotary(self.embed[:1], steps.expand(n, t))
        cos, sin = cos[:, None], sin[:, None]
        future = steps[None, :] > steps[:, None]  # (queries, keys)
        asking = ((steps >= since)[None] & (steps[None] < lengths[:, None])).float()
        h = F.embedding(ids, self.embed)
        keys, values, received = [], [], []
        for block in self.blocks:
            q, k, v = self.project(block, h)
            keys.append(k)
            values.append(v)
            scores = grouped_scores(_rotate(q, cos, sin), _rotate(k, cos, sin), self.kv_heads)
            weights = scores.masked_fill(future, float("-inf")).softmax(-1)
            received.append(torch.einsum("nhgqk,nq->nhk", weights, asking))
            h = self.finish(block, h, grouped_attend(weights, v))
        return keys, values, torch.stack(received, 1)

    def rotate(self, keys: torch.Tensor, positions: torch.Tensor,
               table: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Keys (..., t, d) rotated at `positions` (..., t); `table` is `rotations(n)` for
        positions below n, computed once for many rotations."""
        if table is not None:
            cos, sin = table[0][positions], table[1][positions]
        else:
            cos, sin = self.rotary(self.embed[:1], positions.reshape(1, -1))
            shape = (*positions.shape, -1)
            cos, sin = cos.view(shape), sin.view(shape)
        return _rotate(keys, cos.to(keys.dtype), sin.to(keys.dtype))

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary cosines and sines (..., d) of `positions`, in the model's dtype;
        computed in float64, so a key far past the trained positions keeps the exact angle
        to a query near it (float32 angles drift by 0.004 rad at 32K)."""
        inv_freq = self.rotary.inv_freq.to(torch.float64)
        angles = positions.to(torch.float64)[..., None] * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        scaling = self.rotary.attention_scaling
        return ((angles.cos() * scaling).to(self.dtype),
                (angles.sin() * scaling).to(self.dtype))

    def rotations(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary angles' cosines and sines (n, d) of positions 0..n-1."""
        cos, sin = self.rotary(self.embed[:1], torch.arange(n, device=self.device)[None])
        return cos[0].to(self.dtype), sin[0].to(self.dtype)

    def project(self, block: Block, h: torch.Tensor, adapters: RowAdapters = (),
                layer: int = 0) -> tuple[torch.Tensor, ...]:
        """The layer's queries (n, heads, t, d), keys and values (n, kv_heads, t, d) for
        hidden states h (n, t, hidden), not yet rotated; `adapters` add to rows of layer
        number `layer`."""
        n, t, _ = h.shape
        x = _rms_norm(h, block.attn_norm, self.eps)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        qkv = adapted(block.linear("qkv", x), x, adapters, layer, "qkv")
        q, k, v = qkv.split((q_size, kv_size, kv_size), dim=-1)
        return (q.view(n, t, self.heads, self.head_dim).transpose(1, 2),
                k.view(n, t, self.kv_heads, self.head_dim).transpose(1, 2),
                v.view(n, t, self.kv_heads, self.head_dim).transpose(1, 2))

    def finish(self, block: Block, h: torch.Tensor, attended: torch.Tensor,
               adapters: RowAdapters = (), layer: int = 0) -> torch.Tensor:
        """h after the layer: plus the attention output (n, heads, t, d), then the MLP's."""
        n, _, t, _ = attended.shape
        x = attended.transpose(1, 2).reshape(n, t, -1)
        h = h + adapted(block.linear("out", x), x, adapters, layer, "out")
        x = _rms_norm(h, block.mlp_norm, self.eps)
        gate, up = adapted(block.linear("gate_up", x), x, adapters, layer, "gate_up").chunk(2, -1)
        x = F.silu(gate) * up
        return h + adapted(block.linear("down", x), x, adapters, layer, "down")

    def logits(self, hidden: torch.Tensor, step: bool = False) -> torch.Tensor:
        """fp32 logits for hidden states (..., hidden); a decoding `step`'s read the int8
        head where there is one."""
        if step and self.head_int8 is not None:
            return self.head_int8(hidden).float()
        return F.linear(hidden, self.lm_head).float()


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor,
           scale: float | None = None) -> torch.Tensor:
    """The attention output (n, heads, t, dv) of queries (n, heads, t, d) over keys and
    values (n, kv_heads, keys, d or dv), each query seeing the keys `seen` (a boolean mask
    broadcast to (n, heads, t, keys)) marks; scores scaled by `scale` (default d ** -0.5).

    Several queries take SDPA, which never holds the whole score matrix; a decoding step
    (one query a row) takes `grouped_scores`, several times quicker for that shape on a
    CPU."""
    n, heads, t, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    if t > 1:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=seen, scale=scale,
                                              enable_gqa=keys.shape[1] != heads)
    scores = grouped_scores(q, keys, keys.shape[1], scale)
    hidden = ~seen.expand(n, heads, t, keys.shape[2]).reshape(scores.shape)
    scores = scores.masked_fill(hidden, float("-inf"))
    return grouped_attend(scores.softmax(-1), values)


def grouped_scores(q: torch.Tensor, keys: torch.Tensor, kv_heads: int,
                   scale: float | None = None) -> torch.Tensor:
    """Scaled attention scores in fp32, (n, kv_heads, group, t, keys), of queries
    (n, heads, t, d) over keys (n, kv_heads, keys, d): the query heads that share a key head
    are multiplied together, so keys are never repeated."""
    n, heads, t, d = q.shape
    grouped = q.reshape(n, kv_heads, heads // kv_heads * t, d)
    scores = (grouped @ keys.transpose(2, 3)).float() * (d ** -0.5 if scale is None else scale)
    return scores.view(n, kv_heads, heads // kv_heads, t, -1)


def grouped_attend(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The attention output (n, heads, t, d) for `grouped_scores`-shaped weights."""
    n, kv_heads, group, t, _ = weights.shape
    flat = weights.to(values.dtype).view(n, kv_heads, group * t, -1)
    return (flat @ values).view(n, kv_heads * group, t, -1)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' Llama RMSNorm: normalised in fp32, scaled in the model's dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
