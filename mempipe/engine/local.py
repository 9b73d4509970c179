"""The local engine: transformers + torch in this process, CUDA + bf16 when present,
else CPU + fp32. Concurrent requests are gathered into padded batches."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from mempipe.engine.base import Generation, GenerationRequest, Message
from mempipe.errors import BudgetExceeded, ModelError

MAX_BATCH = int(os.environ.get("MEMPIPE_MAX_BATCH", "8"))


@dataclass(eq=False)  # identity: two equal requests from two callers are two entries
class _Pending:
    request: GenerationRequest
    prompt_ids: list[int]
    result: Generation | None = None
    error: BaseException | None = None


@dataclass
class LocalEngine:
    """One model, loaded on first use; `generate` calls that overlap share a batch."""

    name: str
    device: str | None = None
    _tokenizer: Any = None
    _model: Any = None
    _queue: list[_Pending] = field(default_factory=list)
    _lock: anyio.Lock | None = None
    _load_lock: threading.Lock = field(default_factory=threading.Lock)

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
        tokenizer = self.tokenizer
        with self._load_lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM
                from transformers.utils import logging as hf_logging

                from mempipe.engine.models import resolve

                hf_logging.disable_progress_bar()
                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
                try:
                    model = AutoModelForCausalLM.from_pretrained(resolve(self.name), dtype=dtype)
                except (OSError, ValueError) as exc:
                    raise ModelError(f"cannot load model {self.name}: {exc}") from exc
                model.to(device).eval()
                model.generation_config.pad_token_id = tokenizer.pad_token_id
                self.device, self._model = device, model
        return self._model

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
    async def generate(self, request: GenerationRequest) -> Generation:
        ids = self._prompt_ids(request.messages)
        needed = len(ids) + request.max_tokens
        if needed > request.budget:
            raise BudgetExceeded(
                f"{request.agent}: prompt of {len(ids)} tokens + {request.max_tokens} to "
                f"generate exceeds its budget of {request.budget} tokens"
            )
        pending = _Pending(request, ids)
        self._queue.append(pending)
        if self._lock is None:
            self._lock = anyio.Lock()
        # One batch runs at a time. The lock is FIFO and requests queue in the order they
        # wait on it, so whoever holds it finds its own request done or at the queue's head.
        try:
            async with self._lock:
                if pending.result is None and pending.error is None:
                    await self._run_batch()
        finally:
            if pending in self._queue:  # cancelled while waiting: nobody wants its result
                self._queue.remove(pending)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def _run_batch(self) -> None:
        # Let callers started in the same tick join before the batch is cut.
        for _ in range(20):
            size = len(self._queue)
            await anyio.sleep(0)
            if len(self._queue) == size:
                break
        head = self._queue[0].request.temperature
        batch = [p for p in self._queue if p.request.temperature == head][:MAX_BATCH]
        for p in batch:
            self._queue.remove(p)
        cancel = threading.Event()
        try:
            await anyio.to_thread.run_sync(self._generate_batch, batch, cancel,
                                           abandon_on_cancel=True)
        except BaseException as exc:
            cancel.set()  # the worker thread stops at its next decoding step
            for p in batch:
                if p.result is None:
                    p.error = exc if isinstance(exc, Exception) else RuntimeError("cancelled")
            if not isinstance(exc, Exception):
                raise

    def _generate_batch(self, batch: list[_Pending], cancel: threading.Event) -> None:
        """Runs in a worker thread: one padded `generate` for the whole batch."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        model, tokenizer = self.model, self.tokenizer
        for p in batch:
            if len(p.prompt_ids) + p.request.max_tokens > self.max_positions:
                p.error = BudgetExceeded(
                    f"{p.request.agent}: {len(p.prompt_ids)} prompt tokens + "
                    f"{p.request.max_tokens} to generate exceed the model's "
                    f"{self.max_positions} positions"
                )
        batch = [p for p in batch if p.error is None]
        if not batch:
            return
        started = time.perf_counter()
        width = max(len(p.prompt_ids) for p in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p.prompt_ids)) + p.prompt_ids
                                  for p in batch], device=model.device)  # (batch, width)
        mask = torch.tensor([[0] * (width - len(p.prompt_ids)) + [1] * len(p.prompt_ids)
                             for p in batch], device=model.device)
        temperature = batch[0].request.temperature
        sampling: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None,
                                    "top_k": None}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids, attention_mask=mask,
                max_new_tokens=max(p.request.max_tokens for p in batch),
                pad_token_id=pad, stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                **sampling,
            )  # (batch, width + generated)
        if cancel.is_set():
            return
        seconds = time.perf_counter() - started
        eos = _eos_ids(model, tokenizer)
        for row, p in zip(out[:, width:].tolist(), batch):
            new = row[: p.request.max_tokens]
            finish = "length"
            for i, token in enumerate(new):
                if token in eos:
                    new, finish = new[:i], "stop"
                    break
            text = tokenizer.decode(new, skip_special_tokens=True)
            for stop in p.request.stop:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            p.result = Generation(text=text.strip(), prompt_tokens=len(p.prompt_ids),
                                  completion_tokens=len(new), seconds=seconds,
                                  finish_reason=finish)


    # -- reading without generating -------------------------------------------------------
    def score(self, messages: list[Message], options: list[str]) -> list[float]:
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


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
