"""LoRA adapters over the runner's fused projections: low-rank additions a request can
carry without touching the base weights, so one loaded model serves many adapters.

A projection W x becomes W x + scale * B (A x), with A (rank, in) and B (out, rank) per
layer and target. B starts at zero, so a new adapter changes nothing until trained."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from mempipe.files import write_atomically

TARGETS = ("qkv", "out", "gate_up", "down")  # the runner's Block fields it adapts
# Up to this many tokens (decoding) an addition is computed in float32: a CPU's bf16
# kernels spend more on setting up such small products (rank 16) than on the arithmetic,
# which added 40% to a decoding step of the default model; in float32 it adds 10%.
FEW_TOKENS = 8


@dataclass
class Adapter:
    """Per `f"{layer}.{target}"`: A (rank, in) and B (out, rank), in float32 (trained
    there; cast to the activations' dtype when applied). `model` is the base weights'
    fingerprint: an adapter is only ever applied to the weights it was trained on."""

    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    rank: int
    scale: float
    model: str
    about: dict[str, str] = field(default_factory=dict)
    _cast: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False)

    @classmethod
    def fresh(cls, blocks: list, rank: int, model: str, alpha: float | None = None,
              seed: int = 0) -> Adapter:
        """An untrained adapter for the runner's `blocks`: A random, B zero."""
        generator = torch.Generator().manual_seed(seed)
        a, b = {}, {}
        for layer, block in enumerate(blocks):
            for target in TARGETS:
                out, inputs = getattr(block, target).shape
                a[f"{layer}.{target}"] = (torch.randn(rank, inputs, generator=generator)
                                          / math.sqrt(inputs))
                b[f"{layer}.{target}"] = torch.zeros(out, rank)
        return cls(a=a, b=b, rank=rank, scale=(alpha or 2 * rank) / rank, model=model)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.a.values(), *self.b.values()]

    def delta(self, layer: int, target: str, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to `target`'s output in `layer` for inputs x (..., in),
        in x's dtype."""
        few = x[..., 0].numel() <= FEW_TOKENS
        a, b = self._weights(f"{layer}.{target}", torch.float32 if few else x.dtype)
        return F.linear(F.linear(x.to(a.dtype), a), b).to(x.dtype)

    def _weights(self, key: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """A and scale * B in `dtype`: computed on every call while training (part of the
        graph), once when serving."""
        a, b = self.a[key], self.b[key]
        if a.requires_grad:
            self._cast.clear()
            return a.to(dtype), (b * self.scale).to(dtype)
        if (key, dtype) not in self._cast:
            self._cast[key, dtype] = a.to(dtype), (b * self.scale).to(dtype)
        return self._cast[key, dtype]

    @property
    def bytes(self) -> int:
        return sum(t.numel() * 2 for t in self.parameters())  # stored in bf16

    def save(self, path: Path) -> None:
        """Written whole to a temporary file, then renamed: a crash leaves the old one."""
        from safetensors.torch import save_file

        tensors = {f"a.{k}": v.detach().to(torch.bfloat16).contiguous()
                   for k, v in self.a.items()}
        tensors |= {f"b.{k}": v.detach().to(torch.bfloat16).contiguous()
                    for k, v in self.b.items()}
        meta = {"rank": str(self.rank), "scale": str(self.scale), "model": self.model,
                **self.about}
        write_atomically(path, lambda to: save_file(tensors, str(to), metadata=meta))

    @classmethod
    def cached(cls, path: Path) -> Adapter:
        """The adapter saved at `path`, read once while the file is unchanged: one object,
        so the rows that read with it batch together."""
        key = (path, path.stat().st_mtime_ns)
        if key not in _CACHE:
            _CACHE[key] = cls.load(path)
        return _CACHE[key]

    @classmethod
    def load(cls, path: Path) -> Adapter:
        from safetensors import safe_open

        a, b = {}, {}
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                side, key = name.split(".", 1)
                (a if side == "a" else b)[key] = f.get_tensor(name).float()
        rank, scale, model = int(meta.pop("rank")), float(meta.pop("scale")), meta.pop("model")
        return cls(a=a, b=b, rank=rank, scale=scale, model=model, about=meta)


_CACHE: dict[tuple[Path, int], Adapter] = {}

# The adapters one forward call applies: each with the rows (indices into the call's
# batch) it serves. Empty when no row has one.
RowAdapters = list[tuple[Adapter, torch.Tensor]]


def adapted(y: torch.Tensor, x: torch.Tensor, adapters: RowAdapters, layer: int,
            target: str) -> torch.Tensor:
    """y (n, t, out) = a projection of x (n, t, in), plus each adapter's addition on the
    rows it serves."""
    for adapter, rows in adapters:
        if len(rows) == len(x):  # every row: no gather, no scatter
            y = y + adapter.delta(layer, target, x)
        else:
            y = y.index_add(0, rows, adapter.delta(layer, target, x[rows]))
    return y
