"""The local engine: transformers + torch in this process, CUDA + bf16 when present,
else CPU (bf16 where the processor computes in it, else fp32). Every concurrent request
joins one continuously batched decoding loop (`batcher.py`) over a lean forward pass
(`llama.py`)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from mempipe.engine import torch_thread
from mempipe.engine.base import GLOBAL_TOKENS, Generation, GenerationRequest, Message
from mempipe.errors import BudgetExceeded, ModelError

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class LocalEngine:
    """One model, loaded on first use; `generate` calls that overlap share a batch."""

    name: str
    device: str | None = None
    _tokenizer: Any = None
    _model: Any = None
    _batcher: Any = None
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _step_locks: Any = field(default_factory=weakref.WeakKeyDictionary)

    # -- loading -----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        with self._load_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                from mempipe.engine.models import resolve

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

                from mempipe.engine.models import resolve

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

    def _prompt_ids(self, messages: list[Message]) -> list[int]:
        tokenizer = self.tokenizer
        chat = [m.model_dump() for m in messages]
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        else:  # a base model: plain text, one message after another
            text = "\n\n".join(m["content"] for m in chat) + "\n\n"
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self._prompt_ids(messages))

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
                from mempipe.engine.batcher import Batcher
                from mempipe.engine.llama import LlamaRunner, supports

                if not supports(model):
                    raise ModelError(
                        f"cannot run {self.name}: mempipe's engine runs Llama-family models "
                        f"(llama, mistral, qwen2), not {model.config.model_type}")
                cuda = self.device is not None and self.device.startswith("cuda")
                rows = int(os.environ.get("MEMPIPE_MAX_BATCH", "256" if cuda else "64"))
                gib = float(os.environ.get("MEMPIPE_KV_GIB", "16" if cuda else "2"))
                self._batcher = Batcher(LlamaRunner(model), tokenizer, _eos_ids(model, tokenizer),
                                        max_rows=rows, cache_bytes=int(gib * 2**30))

    def _checked_ids(self, request: GenerationRequest) -> list[int]:
        """The request's prompt tokens, or the reason it cannot run."""
        ids = self._prompt_ids(request.messages)
        attended = len(ids) if request.window is None else min(len(ids),
                                                               request.window + GLOBAL_TOKENS)
        if attended + request.max_tokens > request.budget:
            raise BudgetExceeded(
                f"{request.agent}: prompt of {attended} tokens + {request.max_tokens} to "
                f"generate exceeds its budget of {request.budget} tokens"
            )
        if request.window is None and len(ids) + request.max_tokens > self.max_positions:
            raise BudgetExceeded(
                f"{request.agent}: {len(ids)} prompt tokens + {request.max_tokens} to "
                f"generate exceed the model's {self.max_positions} positions"
            )
        return ids

    def _admit(self, request: GenerationRequest) -> Any:
        """A sequence for `request`, queued to join the batch."""
        from mempipe.engine.batcher import Sequence

        sequence = Sequence(request, self._checked_ids(request))
        self.batcher.submit(sequence)
        return sequence

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
        sequence = self._admit(request)
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
                          finish_reason="length" if sequence.finish == "length" else "stop")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.window is not None:  # read in one pass, then written at once
            yield (await self._generate_windowed(request)).text
            return
        sequence = self._admit(request)
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
    def score(self, messages: list[Message], options: list[str]) -> list[float]:
        return torch_thread.run(self._score, messages, options)

    def _score(self, messages: list[Message], options: list[str]) -> list[float]:
        import torch

        if not options:
            return []
        prompt = self._prompt_ids(messages)
        rows = [self.tokenizer(o, add_special_tokens=False)["input_ids"] or [0]
                for o in options]
        longest = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([prompt + r + [pad] * (longest - len(r)) for r in rows],
                           device=self.model.device)  # (options, prompt + longest)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[:, len(prompt) - 1:-1].float()
        logp = logits.log_softmax(-1)  # (options, longest, vocab): the reply's positions
        scores = []
        for i, row in enumerate(rows):
            picked = logp[i, torch.arange(len(row)), torch.tensor(row)]
            scores.append(float(picked.mean()))
        return scores

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
