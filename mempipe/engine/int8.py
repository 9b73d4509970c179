"""Int8 copies of a model's weights, for decoding steps on a CPU (`MEMPIPE_QUANTIZE=int8`).

A decoding step multiplies every weight by one row per running sequence, so on a CPU its
time goes to reading the weights from memory: int8 copies (one scale per output channel)
read half the bytes of bf16, and torch's int8 kernel is made for few rows
(bench/throughput.py: one request decodes 1.6x faster on a 2-core CPU). Prompts are still
read with the model's own weights, where the bf16 kernels are faster for many rows, and so
is whatever training differentiates. The copies serve every decoding step (one new
position per row) and nothing else; the choice never depends on how many rows run beside
a request, so a request writes the same tokens alone or in a batch."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mempipe.errors import ModelError

CHOICES = ("int8",)


@dataclass(frozen=True)
class Int8:
    """A weight (out, in) as int8 values and one scale per output channel."""

    values: torch.Tensor
    scales: torch.Tensor

    @classmethod
    def of(cls, weight: torch.Tensor) -> Int8:
        """The weight rounded to 255 levels per output channel (its largest magnitude
        maps to 127)."""
        wide = weight.detach().float()
        scales = (wide.abs().amax(1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        values = (wide / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
        return cls(values, scales.to(weight.dtype))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) times the weight: (..., out), in x's dtype."""
        rows = x.reshape(-1, x.shape[-1])
        return torch._weight_int8pack_mm(rows, self.values, self.scales).view(
            *x.shape[:-1], -1)


def wanted(device: str) -> bool:
    """Whether MEMPIPE_QUANTIZE asks for int8 decoding; a value it cannot honour is an
    error naming it."""
    name = os.environ.get("MEMPIPE_QUANTIZE", "").strip()
    if not name or name == "none":
        return False
    if name not in CHOICES:
        raise ModelError(f"MEMPIPE_QUANTIZE must be int8 or none, not {name}")
    if device != "cpu":
        raise ModelError(f"MEMPIPE_QUANTIZE=int8 speeds up decoding on a CPU; this model "
                         f"runs on {device}")
    return True
