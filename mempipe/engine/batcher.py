"""Continuous batching: every running sequence advances one token per step, sequences
join the batch between steps and leave it the step they finish, so no request waits for
the longest one beside it. A sequence decoding alone, greedily, checks a draft of the next
few tokens each step (lookup.py) and may advance several.

Prompts are read in chunks between decoding steps (chunked prefill): while others decode,
a step reads only as many prompt tokens as take about `STALL` decoding steps, so a long
prompt arriving delays the running requests by one chunk a step, never by its whole
reading. With nothing decoding, a step reads up to PREFILL_TOKENS at once.

`step` runs in a worker thread and is the only code that touches the KV cache; callers
submit sequences and mark them cancelled, and the next step sweeps those out."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from mempipe.engine import lookup
from mempipe.engine.base import GenerationRequest
from mempipe.engine.llama import LlamaRunner, Prefix

PREFILL_TOKENS = int(os.environ.get("MEMPIPE_PREFILL_TOKENS", "8192"))  # per forward call
STALL = 1.0  # a prompt chunk read beside decoding takes about this many decoding steps
SPARE = 0.25  # what a chunk's tokens may add, in decoding steps, where they are nearly free
MIN_CHUNK = 8  # prompt tokens a step reads at least, however slow reading is


@dataclass(eq=False)  # identity: two equal requests are two sequences
class Sequence:
    """One request's prompt and the tokens generated for it so far."""

    request: GenerationRequest
    prompt: list[int]
    prefix: Prefix | None = None  # memories put in the cache before the prompt
    read: int = 0  # prompt tokens in the cache so far
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
    def unread(self) -> int:
        """Prompt tokens not yet in the cache."""
        return len(self.prompt) - self.read

    @property
    def cached(self) -> int:
        """Slots of this sequence held in the cache: the prefix, the prompt read so far,
        then every generated token but the newest, which the next step feeds in."""
        return self.offset + self.read + max(0, len(self.tokens) - 1)

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
    `running[i]`, the decoding sequences first, then those whose prompts are still being
    read, in arrival order. At most `max_rows` sequences run at once, and a sequence joins
    only while the cache stays within `cache_bytes`; the rest wait in arrival order."""

    def __init__(self, runner: LlamaRunner, tokenizer: Any, eos: set[int], max_rows: int,
                 cache_bytes: int) -> None:
        self.runner, self.tokenizer, self.eos = runner, tokenizer, eos
        self.max_rows, self.cache_bytes = max_rows, cache_bytes
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.steps = 0
        self.decoded, self.decode_seconds = 0, 0.0  # tokens written by decoding steps, time
        # What sizes a prompt chunk read beside decoding steps.
        self.step_seconds: float | None = None  # one decoding step, a moving average
        self.read_cost = ReadCost()
        self.chunk = 4 * MIN_CHUNK  # the last chunk's size
        self.drafts = lookup.DRAFT_TOKENS  # guessed tokens a lone greedy row checks a step
        self._lock = threading.Lock()

    def submit(self, sequence: Sequence) -> None:
        sequence.generator = Sequence.generator_for(sequence.request, self.runner.device)
        self.waiting.append(sequence)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def step(self) -> None:
        """Sweep out finished sequences, admit waiting ones, advance every decoding
        sequence by one token and read one chunk of the prompts still unread."""
        with self._lock, torch.inference_mode():
            self._sweep()
            self._admit()
            decoding = self.running[:self.decoding]
            reading = self.running[len(decoding):]
            try:
                if decoding:
                    self._decode(decoding)
                if reading:
                    self._read(reading, first=len(decoding),
                               budget=self._chunk() if decoding else PREFILL_TOKENS)
            except Exception as exc:  # nothing a caller sent can cause this: fail them all
                for sequence in decoding + reading:
                    sequence.error, sequence.finish = exc, "error"
            self._sweep()
            self.steps += 1
            if not self.running and not self.waiting:
                self.runner.release()

    @property
    def decoding(self) -> int:
        """How many running sequences (the first rows) have their prompts read."""
        return sum(1 for s in self.running if not s.unread)

    def _chunk(self) -> int:
        """Prompt tokens a step may read beside decoding: as many as take about STALL
        decoding steps at the seconds per token measured so far. Where tokens are nearly
        free (the most a step reads would add less than a decoding step to what any chunk
        costs: a GPU, whose cost is launching the kernels), as many as add SPARE steps, at
        most twice the last chunk, so one noisy measure cannot read a whole prompt at once.
        Sizes alternate with three quarters of that, so the fit can tell the parts apart."""
        fit = self.read_cost.fit()
        if self.step_seconds is None or fit is None:
            return self.chunk
        per_token, average = fit
        if per_token * PREFILL_TOKENS < self.step_seconds:
            size = min(SPARE * self.step_seconds / per_token if per_token else PREFILL_TOKENS,
                       2 * self.chunk)
        else:
            size = STALL * self.step_seconds / average
        size = int(min(size, PREFILL_TOKENS))
        self.chunk = max(MIN_CHUNK, 3 * size // 4 if self.steps % 2 else size)
        return self.chunk

    # -- membership ------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Drop finished sequences, keeping the decoding rows before the reading ones:
        the last decoding row fills a decoding row's place, the last row the place that
        leaves."""
        i = 0
        while i < len(self.running):
            sequence = self.running[i]
            if not sequence.done:
                i += 1
                continue
            sequence.seconds = time.perf_counter() - sequence.started
            hole = i
            if not sequence.unread and hole < self.decoding - 1:  # a decoding row's place
                self._fill(self.decoding - 1, hole)
                hole = self.decoding - 1
            if hole < len(self.running) - 1:
                self._fill(len(self.running) - 1, hole)
            self.running.pop()

    def _fill(self, source: int, target: int) -> None:
        """Row `source` takes row `target`'s place."""
        self.runner.move(source, target, self.running[source].cached)
        self.running[target] = self.running[source]

    def _admit(self) -> None:
        per_position = self.runner.bytes_per_position
        joined = 0
        while self.waiting and len(self.running) < self.max_rows:
            sequence = self.waiting[0]
            if sequence.done:  # cancelled before it joined
                self.waiting.popleft()
                continue
            positions = max(self.runner.capacity, sequence.slots)
            rows = len(self.running) + 1
            if self.running and rows * positions * per_position > self.cache_bytes:
                break
            self.running.append(self.waiting.popleft())
            joined += 1
        if joined:
            needed = max(s.slots for s in self.running)
            self.runner.reserve(min(self.max_rows, _power_of_two(len(self.running))), needed)
            for row in range(len(self.running) - joined, len(self.running)):
                self.runner.inject(row, self.running[row].prefix)
                self.runner.attach(row, self.running[row].request.adapter)

    # -- the model -------------------------------------------------------------------------
    def _decode(self, sequences: list[Sequence]) -> None:
        """One token for every decoding row; a row decoding alone and greedily checks a
        draft beside it (lookup.py), and writes every drafted token the model confirms."""
        device = self.runner.device
        started = time.perf_counter()
        guess = self._draft(sequences[0]) if len(sequences) == 1 else []
        ids = torch.tensor([[s.tokens[-1], *guess] for s in sequences], device=device)
        starts = torch.tensor([s.cached for s in sequences], device=device)
        hidden = self.runner.forward(0, ids, starts)
        if guess:
            written = self._confirm(sequences[0], guess, self.runner.logits(hidden[0], step=True))
        else:
            self._choose(sequences, self.runner.logits(hidden[:, -1], step=True))
            written = len(sequences)
        seconds = time.perf_counter() - started
        self.step_seconds = _averaged(self.step_seconds, seconds)
        self.decoded += written
        self.decode_seconds += seconds

    def _draft(self, sequence: Sequence) -> list[int]:
        """The guess a lone greedy row checks this step: none where it samples, where
        decoding reads int8 copies (a step of several tokens reads the weights themselves,
        and would write other tokens), or past its last token or the model's positions."""
        if sequence.request.temperature != 0 or self.runner.head_int8 is not None:
            return []
        room = min(sequence.request.max_tokens - len(sequence.tokens),
                   self.runner.max_positions - sequence.cached - 1)
        return lookup.draft(sequence.prompt + sequence.tokens, min(self.drafts, room))

    def _confirm(self, sequence: Sequence, guess: list[int], logits: torch.Tensor) -> int:
        """Take the model's greedy token at each position of [newest, *guess] while it is
        the guessed one; the first it replaces is taken too. How many were written."""
        greedy = logits.argmax(-1).tolist()
        scored = logits.float().log_softmax(-1)
        for i, token in enumerate(greedy):
            self._take(sequence, token, float(scored[i, token]))
            if sequence.done or i == len(guess) or token != guess[i]:
                return i + 1
        return len(greedy)

    def _read(self, sequences: list[Sequence], first: int, budget: int) -> None:
        """Read up to `budget` prompt tokens of the reading rows (first.., arrival order):
        a chunk of the first prompt where it is longer than the budget, else the whole
        rest of as many prompts as fit side by side, which then give their first tokens.
        Either way only leading rows finish, so the decoding rows stay first."""
        device = self.runner.device
        width = min(budget, sequences[0].unread)
        group = sequences[:1]
        for sequence in sequences[1:]:
            longest = max(width, sequence.unread)
            if (len(group) + 1) * longest > budget or sequence.offset + sequence.read \
                    + longest > self.runner.max_positions:
                break
            group.append(sequence)
            width = longest
        starts = [s.offset + s.read for s in group]
        self.runner.reserve(self.runner.rows, max(starts) + width)  # rows padded past their end
        chunks = [s.prompt[s.read:s.read + width] for s in group]
        ids = torch.tensor([c + [0] * (width - len(c)) for c in chunks], device=device)
        started = time.perf_counter()
        hidden = self.runner.forward(first, ids, torch.tensor(starts, device=device))
        for sequence, chunk in zip(group, chunks):
            sequence.read += len(chunk)
        done = [i for i, s in enumerate(group) if not s.unread]
        if done:
            last = torch.stack([hidden[i, len(chunks[i]) - 1] for i in done])
            self._choose([group[i] for i in done], self.runner.logits(last))
        self.read_cost.add(len(group) * width, time.perf_counter() - started)

    def _choose(self, sequences: list[Sequence], logits: torch.Tensor) -> None:
        greedy = logits.argmax(-1).tolist()
        scored = logits.float().log_softmax(-1)
        for i, sequence in enumerate(sequences):
            request = sequence.request
            if sequence.done:
                continue
            token = greedy[i] if request.temperature == 0 else choose_token(
                logits[i], request, sequence.generator)
            self._take(sequence, token, float(scored[i, token]))

    def _take(self, sequence: Sequence, token: int, logprob: float) -> None:
        """Write `token`, or end the sequence where it is the end, a stop string is
        written or the most tokens are."""
        request = sequence.request
        sequence.logprobs.append(logprob)
        if token in self.eos:
            sequence.finish = "stop"
            return
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


class ReadCost:
    """Seconds the last prompt chunks took, read as a part per token (their slope by size)
    and an average per token (their whole cost over their tokens). Every chunk also pays a
    fixed part (a pass over the weights; on a GPU, launching every kernel, which outweighs
    the arithmetic of thousands of tokens)."""

    def __init__(self, reads: int = 16) -> None:
        self.reads: deque[tuple[int, float]] = deque(maxlen=reads)

    def add(self, tokens: int, seconds: float) -> None:
        self.reads.append((tokens, seconds))

    def fit(self) -> tuple[float, float] | None:
        """Seconds per token at the margin (at least 0; the average where the reads were
        all of one size) and on average; None before any read."""
        if not self.reads:
            return None
        tokens, seconds = zip(*self.reads)
        mean_tokens, mean_seconds = statistics.fmean(tokens), statistics.fmean(seconds)
        average = mean_seconds / mean_tokens
        spread = sum((n - mean_tokens) ** 2 for n in tokens)
        if spread < 0.01 * mean_tokens ** 2 * len(tokens):
            return average, average
        return max(0.0, sum((n - mean_tokens) * (t - mean_seconds)
                            for n, t in zip(tokens, seconds)) / spread), average


def _averaged(average: float | None, measured: float, weight: float = 0.3) -> float:
    return measured if average is None else (1 - weight) * average + weight * measured


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
