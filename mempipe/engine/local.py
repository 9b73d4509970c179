"""The local engine: transformers + torch in this process, CUDA + bf16 when present,
else CPU (bf16 where the processor computes in it, else fp32). Every concurrent request
joins one continuously batched decoding loop (`batcher.py`) over a lean forward pass
(`llama.py`)."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio

from mempipe.engine import torch_thread
from mempipe.engine.base import (
    GLOBAL_TOKENS,
    MEMORIES,
    Capability,
    Generation,
    GenerationRequest,
    Message,
)
from mempipe.engine.models import resolve
from mempipe.errors import BudgetExceeded, ModelError

# torch, transformers and the modules built on them (batcher, llama, lora, training,
# memories, lambda_attention) are imported where first used: a process that never runs
# the model (`mempipe agents`, `memory list`, the CLI before its first request) never
# loads them.

DTYPES = ("float32", "bfloat16", "float16")
LOGIT_SLICE = 256  # positions whose logits are held at once when scoring long rows


@dataclass
class LocalEngine:
    """One model, loaded on first use; `generate` calls that overlap share a batch."""

    name: str
    device: str | None = None
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"memories", "adapters",
                                                               "training", "scoring"})
    _tokenizer: Any = None
    _model: Any = None
    _batcher: Any = None
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _step_locks: Any = field(default_factory=weakref.WeakKeyDictionary)
    _heads: dict[tuple[int, ...], Any] = field(default_factory=dict)
    _fingerprint: str | None = None

    # -- loading -----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        with self._load_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                path = resolve(self.name)
                try:
                    tokenizer = AutoTokenizer.from_pretrained(path)
                except (OSError, ValueError) as exc:
                    raise ModelError(f"cannot load a tokenizer from {self.name}: {exc}") from exc
                tokenizer.padding_side = "left"
                if tokenizer.pad_token_id is None:
                    tokenizer.pad_token = tokenizer.eos_token
                self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def model(self) -> Any:
        if self._model is None:
            torch_thread.run(self._load)
        return self._model

    def _load(self) -> None:
        tokenizer = self.tokenizer
        with self._load_lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                dtype = _dtype(device)
                try:
                    model = AutoModelForCausalLM.from_pretrained(resolve(self.name), dtype=dtype)
                except (OSError, ValueError) as exc:
                    raise ModelError(f"cannot load model {self.name}: {exc}") from exc
                model.to(device).eval()
                model.generation_config.pad_token_id = tokenizer.pad_token_id
                self.device, self._model = device, model

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _prompt_text(self, messages: list[Message]) -> str:
        """The framed prompt; a final assistant message is a reply begun, which the model
        continues."""
        replying = bool(messages) and messages[-1].role == "assistant"
        begun = messages[-1].content if replying else ""
        chat = [m.model_dump() for m in (messages[:-1] if replying else messages)]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=True) + begun
        return "\n\n".join(m["content"] for m in chat) + "\n\n" + begun  # a base model

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return self._ids(self._prompt_text(messages))

    def request_ids(self, request: GenerationRequest) -> list[int]:
        """A request's prompt tokens: its raw `prompt` as it is, else its framed messages."""
        return self._ids(request.prompt) if request.prompt is not None \
            else self.prompt_ids(request.messages)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _split(self, messages: list[Message]) -> tuple[list[int], list[int]]:
        """The prompt's tokens before and after its one `MEMORIES` mark."""
        text = self._prompt_text(messages)
        if text.count(MEMORIES) != 1:
            raise ModelError(f"a prompt with memories must hold {MEMORIES} exactly once")
        head, tail = text.split(MEMORIES)
        return self._ids(head), self._ids(tail)

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self.prompt_ids(messages))

    # -- generation ------------------------------------------------------------------------
    @property
    def batcher(self) -> Any:
        if self._batcher is None:
            torch_thread.run(self._make_batcher)
        return self._batcher

    def _make_batcher(self) -> None:
        model, tokenizer = self.model, self.tokenizer
        with self._load_lock:
            if self._batcher is None:
                from mempipe.engine import int8
                from mempipe.engine.batcher import Batcher
                from mempipe.engine.llama import LlamaRunner, supports

                if not supports(model):
                    raise ModelError(
                        f"cannot run {self.name}: mempipe's engine runs Llama-family models "
                        f"(llama, mistral, qwen2), not {model.config.model_type}")
                cuda = self.device is not None and self.device.startswith("cuda")
                rows = int(os.environ.get("MEMPIPE_MAX_BATCH", "256" if cuda else "64"))
                gib = float(os.environ.get("MEMPIPE_KV_GIB", "16" if cuda else "2"))
                runner = LlamaRunner(model)
                if int8.wanted(str(self.device)):
                    runner.quantize()
                self._batcher = Batcher(runner, tokenizer, _eos_ids(model, tokenizer),
                                        max_rows=rows, cache_bytes=int(gib * 2**30))

    def _checked_ids(self, request: GenerationRequest, prefix: Any = None) -> list[int]:
        """The request's prompt tokens (after its prefix, if any), or the reason it cannot
        run. A prefix's slots count as attended, the positions it stands for as used."""
        ids = self.request_ids(request) if prefix is None else prefix[1]
        slots, span = (0, 0) if prefix is None else (prefix[0].slots, prefix[0].span)
        attended = slots + (len(ids) if request.window is None
                            else min(len(ids), request.window + GLOBAL_TOKENS))
        if attended + request.max_tokens > request.budget:
            raise BudgetExceeded(
                f"{request.agent}: prompt of {attended} tokens + {request.max_tokens} to "
                f"generate exceeds its budget of {request.budget} tokens"
            )
        used = span + len(ids) + request.max_tokens
        if request.window is None and used > self.max_positions:
            raise BudgetExceeded(
                f"{request.agent}: {span + len(ids)} prompt tokens + {request.max_tokens} to "
                f"generate exceed the model's {self.max_positions} positions"
            )
        return ids

    async def _admit(self, request: GenerationRequest) -> Any:
        """A sequence for `request`, queued to join the batch."""
        from mempipe.engine.batcher import Sequence

        prefix = None
        if request.memories:
            prefix = await torch_thread.run_async(self._prefix, request.messages,
                                                  request.memories)
        ids = self._checked_ids(request, prefix)
        self._check_adapter(request.adapter)
        sequence = Sequence(request, ids, prefix=prefix[0] if prefix else None)
        self.batcher.submit(sequence)
        return sequence

    # -- adapters (LoRA) ----------------------------------------------------------------
    def new_adapter(self, rank: int, about: dict[str, str] | None = None) -> Any:
        """An untrained LoRA adapter (engine/lora.py) for these weights."""
        from mempipe.engine.lora import Adapter

        adapter = Adapter.fresh(self.batcher.runner.blocks, rank, self.fingerprint)
        adapter.about.update(about or {})
        return adapter

    def _check_adapter(self, adapter: Any) -> None:
        if adapter is not None and adapter.model != self.fingerprint:
            raise ModelError(f"this adapter was trained on other weights ({adapter.model}, "
                             f"not {self.fingerprint} of {self.name}): train it again")

    def fit_adapter(self, adapter: Any,
                    examples: list[tuple[list[Message], Callable[[], list[Any]], str]],
                    epochs: int = 2, lr: float = 5e-4, progress: Any = None,
                    checkpoint: Path | None = None, steps: int | None = None) -> list[float]:
        """Train `adapter` to reply each example's answer to its messages, read with the
        memories its loader returns (none: []) where they hold `MEMORIES`, for `epochs`
        or at most `steps` steps; each epoch's mean loss. Memories are loaded when their
        example is read, never all at once.
        With `checkpoint`, a killed training goes on from where it was (`training.fit`);
        Ctrl-C stops it at its next step rather than after the whole training."""
        from mempipe.engine.training import Example, fit

        self._check_adapter(adapter)
        end = [self.tokenizer.eos_token_id]  # the reply ends its turn
        prepared = []
        for messages, memories, answer in examples:
            if any(MEMORIES in m.content for m in messages):  # split once, not every step
                head, prompt = self._split(messages)
                prefix = lambda h=head, load=memories: self._prefix_after(h, load())  # noqa: E731
            else:
                prompt, prefix = self.prompt_ids(messages), lambda: None
            prepared.append(Example(prefix, prompt, self._ids(answer) + end))
        stop = threading.Event()  # Ctrl-C here stops the torch thread at its next step

        def step(done: int, total: int, loss: float) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            if progress is not None:
                progress(done, total, loss)

        try:
            return torch_thread.run(fit, self.batcher.runner, adapter, prepared, epochs, lr,
                                    step, 0, checkpoint, None, steps)
        except KeyboardInterrupt:
            stop.set()
            raise

    # -- memories (tier 2) -------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """The weights' identity: memories encoded with other weights are refused."""
        if self._fingerprint is None:
            from mempipe.engine.memories import fingerprint

            runner = self.batcher.runner
            self._fingerprint = torch_thread.run(fingerprint, runner)
        return self._fingerprint

    def read_passages(self, messages: list[Message], passages: list[str]) -> list[Any]:
        """The attention state (`memories.PassageState`) each passage leaves when read
        where `messages` hold `MEMORIES`, each on its own."""
        from mempipe.engine.memories import read_passages

        head, _ = self._split(messages)
        ids = [self._ids(p) or [self.tokenizer.eos_token_id] for p in passages]
        return torch_thread.run(read_passages, self.batcher.runner, head, ids)

    def _prefix(self, messages: list[Message], memories: list[Any]) -> tuple[Any, list[int]]:
        """The cache prefix for `memories` in `messages`, and the tokens read after it."""
        head, tail = self._split(messages)
        return self._prefix_after(head, memories), tail

    def _prefix_after(self, head: list[int], memories: list[Any]) -> Any:
        """The cache prefix for the framing `head` (read once per framing), then `memories`."""
        from mempipe.engine.memories import build_prefix, read_head

        runner = self.batcher.runner
        if tuple(head) not in self._heads:
            self._heads[tuple(head)] = read_head(runner, head)
        return build_prefix(runner, self._heads[tuple(head)], memories)

    async def _advance(self, sequence: Any) -> None:
        """Return once `sequence` has a new token or is done. Whoever waits runs the next
        step for everyone, one caller at a time per event loop, so there is no background
        task to start or stop and the waiting callers take turns."""
        loop = asyncio.get_running_loop()
        lock = self._step_locks.setdefault(loop, anyio.Lock())
        seen = len(sequence.tokens)
        async with lock:
            if len(sequence.tokens) == seen and not sequence.done:
                await torch_thread.run_async(self.batcher.step)

    async def generate(self, request: GenerationRequest) -> Generation:
        if request.window is not None:
            return await self._generate_windowed(request)
        sequence = await self._admit(request)
        try:
            while not sequence.done:
                await self._advance(sequence)
        finally:
            sequence.cancel()  # a caller cancelled while waiting: its row is freed
        return self._result(sequence)

    def _result(self, sequence: Any) -> Generation:
        if sequence.error is not None:
            raise sequence.error
        return Generation(text=sequence.text(self.tokenizer).strip(),
                          prompt_tokens=len(sequence.prompt),
                          completion_tokens=len(sequence.tokens), seconds=sequence.seconds,
                          finish_reason="length" if sequence.finish == "length" else "stop",
                          logprob=statistics.fmean(sequence.logprobs)
                          if sequence.logprobs else None)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.window is not None:  # read in one pass, then written at once
            yield (await self._generate_windowed(request)).text
            return
        sequence = await self._admit(request)
        held = max((len(stop) for stop in request.stop), default=1) - 1
        sent = ""
        try:
            while not sequence.done:
                await self._advance(sequence)
                text = sequence.text(self.tokenizer)
                if not sequence.done:  # keep back what may yet turn into a stop string
                    text = text[: len(text) - held].rstrip("\ufffd")
                if len(text) > len(sent) and text.startswith(sent):
                    yield text[len(sent):]
                    sent = text
        finally:
            sequence.cancel()
        if sequence.error is not None:
            raise sequence.error

    async def _generate_windowed(self, request: GenerationRequest) -> Generation:
        """A request read with Λ-shaped attention: on its own, outside the batch."""
        from mempipe.engine.batcher import Sequence, choose_token
        from mempipe.engine.lambda_attention import LambdaReader

        if request.memories:
            raise ModelError("a request reads either memories or a window, not both")
        sequence = Sequence(request, self._checked_ids(request))
        # No distance beyond the positions the model was trained on.
        reader = LambdaReader(self.batcher.runner, min(request.window, self.max_positions))
        cancel = threading.Event()

        def progress(read: int) -> None:
            if cancel.is_set():
                raise _Abandoned
            if request.progress is not None:
                request.progress(read, len(sequence.prompt))

        def run() -> None:
            generator = Sequence.generator_for(request, reader.runner.device)
            tokens = reader.generate(
                sequence.prompt, request.max_tokens, self.batcher.eos, progress,
                choose=lambda logits: choose_token(logits, request, generator))
            sequence.tokens = tokens
            sequence.finish = "length" if len(tokens) >= request.max_tokens else "stop"
            sequence.seconds = time.perf_counter() - sequence.started

        try:
            await torch_thread.run_async(run)
        finally:
            cancel.set()  # a cancelled caller's reading stops at its next chunk
        return self._result(sequence)

    # -- reading without generating -------------------------------------------------------
    def score(self, messages: list[Message], options: list[str],
              memories: list[Any] | None = None, adapter: Any = None) -> list[float]:
        self._check_adapter(adapter)
        return torch_thread.run(self._score, messages, options, memories or [], adapter)

    def _score(self, messages: list[Message], options: list[str],
               memories: list[Any], adapter: Any) -> list[float]:
        if not options:
            return []
        prefix, prompt = (None, self.prompt_ids(messages)) if not memories else \
            self._prefix(messages, memories)
        rows = [self._ids(o) or [0] for o in options]
        return [sum(row) / len(row) for row in self._read_rows(prompt, rows, prefix, adapter)]

    def continuations(self, prompt: list[int], rows: list[list[int]]) -> list[list[float]]:
        """Each row's tokens' log-probabilities as a continuation of `prompt` (a non-empty
        list of token ids): the prompt read once, the rows side by side."""
        return torch_thread.run(self._read_rows, prompt, rows, None, None)

    def _read_rows(self, prompt: list[int], rows: list[list[int]], prefix: Any,
                   adapter: Any) -> list[list[float]]:
        """The prompt (after the memories' prefix, if any) read once in a cache of its
        own and copied to one row per continuation; each continuation token's
        log-probability, computed a slice of positions at a time."""
        import torch

        longest = max(len(r) for r in rows)
        runner = self.batcher.runner.private()
        read = prefix.slots if prefix is not None else 0
        runner.reserve(len(rows), read + len(prompt) + longest)
        runner.inject(0, prefix)
        runner.attach(0, adapter)  # copied with the row to every option's
        device = runner.device
        found: list[list[float]] = [[] for _ in rows]
        with torch.inference_mode():
            first = runner.forward(0, torch.tensor([prompt], device=device),
                                   torch.tensor([read], device=device))[:, -1:]
            for i in range(1, len(rows)):
                runner.move(0, i, read + len(prompt))
            ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows], device=device)
            hidden = runner.forward(0, ids, torch.full((len(rows),), read + len(prompt),
                                                       device=device))
            hidden = torch.cat([first.expand(len(rows), -1, -1), hidden[:, :-1]], dim=1)
            for start in range(0, longest, LOGIT_SLICE):
                logp = runner.logits(hidden[:, start:start + LOGIT_SLICE]).log_softmax(-1)
                picked = logp.gather(-1, ids[:, start:start + LOGIT_SLICE, None])[..., 0]
                for i, row in enumerate(rows):
                    found[i] += picked[i, :max(0, len(row) - start)].float().tolist()
        return found

    def surprise(self, text: str, window: int = 1024) -> list[tuple[int, int, float]]:
        return torch_thread.run(self._surprise, text, window)

    def _surprise(self, text: str, window: int) -> list[tuple[int, int, float]]:
        import torch

        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        nll = [0.0] * len(ids)  # the first token has nothing before it to predict it
        context = window // 4  # each window re-reads the end of the one before for context
        step = window - context
        for start in range(0, max(1, len(ids) - 1), step):
            chunk = ids[start:start + window]
            if len(chunk) < 2:
                break
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([chunk], device=self.model.device)
                                    ).logits[0, :-1].float()
            losses = torch.nn.functional.cross_entropy(
                logits, torch.tensor(chunk[1:], device=logits.device), reduction="none")
            first = 0 if start == 0 else context - 1  # tokens the last window did not score
            for i in range(first, len(chunk) - 1):
                nll[start + i + 1] = float(losses[i])
            if start + window >= len(ids):
                break
        return [(a, b, n) for (a, b), n in zip(offsets, nll)]


class _Abandoned(Exception):
    """Stops a reading nobody waits for any more."""


def _dtype(device: str) -> Any:
    """MEMPIPE_DTYPE if set; else bf16 on CUDA and on processors with bf16 arithmetic."""
    import torch

    if name := os.environ.get("MEMPIPE_DTYPE"):
        if name not in DTYPES:
            raise ModelError(f"MEMPIPE_DTYPE must be one of {', '.join(DTYPES)}, not {name}")
        return getattr(torch, name)
    if device.startswith("cuda") or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
