"""Continuous batching: every running sequence advances one token per step, sequences
join the batch between steps and leave it the step they finish, so no request waits for
the longest one beside it.

`step` runs in a worker thread and is the only code that touches the KV cache; callers
submit sequences and mark them cancelled, and the next step sweeps those out."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from mempipe.engine.base import GenerationRequest
from mempipe.engine.llama import LlamaRunner, Prefix

PREFILL_TOKENS = int(os.environ.get("MEMPIPE_PREFILL_TOKENS", "2048"))  # per forward call


@dataclass(eq=False)  # identity: two equal requests are two sequences
class Sequence:
    """One request's prompt and the tokens generated for it so far."""

    request: GenerationRequest
    prompt: list[int]
    prefix: Prefix | None = None  # memories put in the cache before the prompt
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop", "length", "cancelled" or "error"
    error: BaseException | None = None
    generator: torch.Generator | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    logprobs: list[float] = field(default_factory=list)  # of each token chosen, the end too

    @property
    def done(self) -> bool:
        return self.finish is not None

    @property
    def offset(self) -> int:
        """Cache slots the prefix takes before the prompt."""
        return self.prefix.slots if self.prefix is not None else 0

    @property
    def cached(self) -> int:
        """Slots of this sequence held in the cache: the prefix, the prompt, then every
        generated token but the newest, which the next step feeds in."""
        return self.offset + len(self.prompt) + max(0, len(self.tokens) - 1)

    @property
    def slots(self) -> int:
        """The most slots it can need."""
        return self.offset + len(self.prompt) + self.request.max_tokens

    @staticmethod
    def generator_for(request: GenerationRequest, device: torch.device) -> torch.Generator | None:
        """The random source of a seeded request; None draws from torch's global one."""
        if request.seed is None:
            return None
        generator = torch.Generator(device)
        generator.manual_seed(request.seed)
        return generator

    def cancel(self) -> None:
        if self.finish is None:
            self.finish = "cancelled"

    def text(self, tokenizer: Any) -> str:
        """The generated text, cut at the first stop string."""
        text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        for stop in self.request.stop:
            if stop in text:
                text = text[: text.index(stop)]
        return text


class Batcher:
    """The running batch over one `LlamaRunner`: row i of its cache belongs to
    `running[i]`. At most `max_rows` sequences run at once, and a sequence joins only
    while the cache stays within `cache_bytes`; the rest wait in arrival order."""

    def __init__(self, runner: LlamaRunner, tokenizer: Any, eos: set[int], max_rows: int,
                 cache_bytes: int) -> None:
        self.runner, self.tokenizer, self.eos = runner, tokenizer, eos
        self.max_rows, self.cache_bytes = max_rows, cache_bytes
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.steps = 0
        self._lock = threading.Lock()

    def submit(self, sequence: Sequence) -> None:
        sequence.generator = Sequence.generator_for(sequence.request, self.runner.device)
        self.waiting.append(sequence)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def step(self) -> None:
        """Sweep out finished sequences, admit waiting ones (prefilled together), and
        advance every other running sequence by one token."""
        with self._lock, torch.inference_mode():
            self._sweep()
            decoding = list(self.running)
            joining = self._admit()
            try:
                if decoding:
                    self._decode(decoding)
                if joining:
                    self._prefill(joining, first=len(decoding))
            except Exception as exc:  # nothing a caller sent can cause this: fail them all
                for sequence in decoding + joining:
                    sequence.error, sequence.finish = exc, "error"
            self._sweep()
            self.steps += 1
            if not self.running and not self.waiting:
                self.runner.release()

    # -- membership ------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Drop finished sequences; the last row moves into each freed one."""
        i = 0
        while i < len(self.running):
            if not self.running[i].done:
                i += 1
                continue
            self.running[i].seconds = time.perf_counter() - self.running[i].started
            last = self.running.pop()
            if i < len(self.running):
                self.runner.move(len(self.running), i, last.cached)
                self.running[i] = last

    def _admit(self) -> list[Sequence]:
        joining: list[Sequence] = []
        per_position = self.runner.bytes_per_position
        while self.waiting and len(self.running) < self.max_rows:
            sequence = self.waiting[0]
            if sequence.done:  # cancelled before it joined
                self.waiting.popleft()
                continue
            positions = max(self.runner.capacity, sequence.slots)
            rows = len(self.running) + 1
            if self.running and rows * positions * per_position > self.cache_bytes:
                break
            joining.append(self.waiting.popleft())
            self.running.append(sequence)
        if joining:
            # Longest prompt first, so each prefill chunk covers a run of rows from the top.
            joining.sort(key=lambda s: -len(s.prompt))
            self.running[len(self.running) - len(joining):] = joining
            needed = max(s.slots for s in self.running)
            self.runner.reserve(min(self.max_rows, _power_of_two(len(self.running))), needed)
        return joining

    # -- the model -------------------------------------------------------------------------
    def _decode(self, sequences: list[Sequence]) -> None:
        device = self.runner.device
        ids = torch.tensor([[s.tokens[-1]] for s in sequences], device=device)
        starts = torch.tensor([s.cached for s in sequences], device=device)
        hidden = self.runner.forward(0, ids, starts)[:, -1]
        self._choose(sequences, self.runner.logits(hidden, step=True))

    def _prefill(self, sequences: list[Sequence], first: int) -> None:
        """Read the joining prompts (rows first.., longest first) in chunks of about
        PREFILL_TOKENS tokens, each row's last position giving its first token."""
        device, longest = self.runner.device, len(sequences[0].prompt)
        width = max(1, PREFILL_TOKENS // len(sequences))
        for i, sequence in enumerate(sequences):
            self.runner.inject(first + i, sequence.prefix)
            self.runner.attach(first + i, sequence.request.adapter)
        last: dict[int, torch.Tensor] = {}
        for start in range(0, longest, width):
            rows = [s for s in sequences if len(s.prompt) > start]
            chunk = [s.prompt[start:start + width] for s in rows]
            size = len(chunk[0])
            ids = torch.tensor([c + [0] * (size - len(c)) for c in chunk], device=device)
            starts = torch.tensor([s.offset + start for s in rows], device=device)
            hidden = self.runner.forward(first, ids, starts)
            for i, s in enumerate(rows):
                if len(s.prompt) <= start + size:
                    last[i] = hidden[i, len(s.prompt) - 1 - start]
        hidden = torch.stack([last[i] for i in range(len(sequences))])
        self._choose(sequences, self.runner.logits(hidden))

    def _choose(self, sequences: list[Sequence], logits: torch.Tensor) -> None:
        greedy = logits.argmax(-1).tolist()
        scored = logits.float().log_softmax(-1)
        for i, sequence in enumerate(sequences):
            request = sequence.request
            if sequence.done:
                continue
            token = greedy[i] if request.temperature == 0 else choose_token(
                logits[i], request, sequence.generator)
            sequence.logprobs.append(float(scored[i, token]))
            if token in self.eos:
                sequence.finish = "stop"
                continue
            sequence.tokens.append(token)
            if request.stop and any(stop in sequence.text(self.tokenizer)
                                    for stop in request.stop):
                sequence.finish = "stop"
            elif len(sequence.tokens) >= request.max_tokens:
                sequence.finish = "length"


def choose_token(logits: torch.Tensor, request: GenerationRequest,
                 generator: torch.Generator | None) -> int:
    """The next token by the request's settings: greedy at temperature 0, else sampled."""
    if request.temperature == 0:
        return int(logits.argmax())
    logits = logits / request.temperature
    if request.top_k:
        kth = logits.topk(min(request.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if request.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        outside = ordered.cumsum(-1) - ordered > request.top_p  # the nucleus ends before
        probs = probs.scatter(-1, order, ordered.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
