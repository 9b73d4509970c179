"""The engine contract: what a request holds, what comes back, what an engine offers."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from mempipe.config import DEFAULT_BUDGET

GLOBAL_TOKENS = 10  # Λ-shaped attention: the first tokens every query sees (LM-Infinite)
MEMORIES = "<|mempipe:memories|>"  # where a prompt's key/value memories go (tier 2)
# What an engine offers beyond generating and scoring, declared so that callers ask
# (`"memories" in engine.capabilities`) instead of probing for methods:
# - memories: computes key/value memories and reads requests' `memories` (tier 2);
# - adapters: reads requests' LoRA `adapter` (tier 3, the memory reader);
# - training: fits adapters (`new_adapter`, `fit_adapter`);
# - scoring: `score` and `surprise` (a server that gives no log-probabilities cannot).
Capability = Literal["memories", "adapters", "training", "scoring"]


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(BaseModel):
    """One chat completion. `budget` is the calling agent's context budget: the tokens
    attended (the prompt, or with `window` the window) plus `max_tokens` must fit it, or the
    engine refuses the request. `progress(read, total)` hears how far a long prompt is."""

    messages: list[Message]
    prompt: str | None = None  # a raw completion: this text as it is, messages unused
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # 0: no limit
    seed: int | None = None  # makes sampling repeatable
    # Λ-shaped attention: read a prompt of any length attending to its first tokens and
    # the last `window`; None reads it whole, within the model's positions.
    window: int | None = Field(default=None, ge=64)
    progress: Callable[[int, int], None] | None = Field(default=None, exclude=True)
    # Tier 2: KVMemory objects put where the prompt holds `MEMORIES`, read
    # without a prefill.
    memories: list[Any] = Field(default_factory=list, exclude=True)
    # A LoRA adapter (engine/lora.py) from the engine's own weights to read it with.
    adapter: Any = Field(default=None, exclude=True)
    stop: list[str] = Field(default_factory=list)
    budget: int = DEFAULT_BUDGET
    agent: str = "?"


class Generation(BaseModel):
    """The completion text with its token counts, the seconds from its arrival to its
    last token, and how sure the model was of it: the mean log-probability of the tokens
    it chose, the end of its turn included (None where the engine cannot say)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: Literal["stop", "length"]
    logprob: float | None = None


class Engine(Protocol):
    """What agents need from a model: token counts to plan within a budget, and generation."""

    name: str
    capabilities: frozenset[Capability]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens in each text, without chat framing."""
        ...

    def prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens the messages take once framed by the chat template."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation:
        """Complete one request; concurrent calls are batched together."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """The completion as pieces of text, each as soon as it is decoded."""
        ...

    def score(self, messages: list[Message], options: list[str],
              memories: list[Any] | None = None, adapter: Any = None) -> list[float]:
        """For each option, the mean log-probability of its tokens as the reply to
        `messages` (with `memories` where they hold `MEMORIES`, read with `adapter`): how
        the model would choose among answers it did not write."""
        ...

    def surprise(self, text: str) -> list[tuple[int, int, float]]:
        """(start, end, -log p) for each token of `text`: character offsets of the token
        and how surprised the model was by it, read in overlapping windows."""
        ...


def best(options: Sequence[str], scores: Sequence[float]) -> tuple[str, float]:
    """The option `Engine.score` gave the highest score, and that score ("" and -inf
    where there is no option)."""
    if not options:
        return "", -math.inf
    chosen = max(range(len(options)), key=scores.__getitem__)
    return options[chosen], scores[chosen]
