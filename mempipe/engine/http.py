"""An engine behind an OpenAI-compatible HTTP API: `mempipe serve`, vLLM, llama.cpp's
server, Ollama. Generation is `/v1/chat/completions` (streamed as server-sent events);
scoring and surprise are `/v1/completions` with `echo` and `logprobs`, over the prompt
framed by the server's own chat template (from `/props`); budgets are counted with the
server's tokenizer (`/tokenize`, else the local one MEMPIPE_TOKENIZER names), never
guessed. What the server cannot do is missing from `capabilities`, and callers fall
back."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from mempipe.engine.base import Capability, Generation, GenerationRequest, Message
from mempipe.engine.local import LocalEngine
from mempipe.engine.server import Server, ServerGone, api_key, raise_for, split_url
from mempipe.errors import BudgetExceeded, ModelError


@dataclass(eq=False)
class Served:
    """What the server said of itself on first contact."""

    name: str
    max_positions: int | None
    template: str | None  # the chat template; None: no scoring
    specials: dict[str, str]  # bos_token, eos_token for the template
    names: list[str]  # every model it serves


@dataclass(eq=False)
class HTTPEngine:
    """The model served at `url` (`http://HOST:PORT/v1`, `#NAME` picks a served model;
    default: the first `/v1/models` lists). Contacts the server on first use: a wrong
    URL, key or model name is one line, exit 2, before any work."""

    spec: str
    retries: int = 4
    server: Server = field(init=False)
    _wanted: str | None = field(init=False, default=None)
    _served: Served | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _framed: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    # the tokenize forms the server lacks: "list" (mempipe serve's), or a path
    _untokenizing: set[str] = field(default_factory=set)
    _echoes: str | None = None  # how the server echoes log-probabilities (_echo_form)
    _local: LocalEngine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        url, self._wanted = split_url(self.spec)
        self.server = Server(url, api_key(), self.retries)

    # -- what the server is ---------------------------------------------------------
    @property
    def served(self) -> Served:
        with self._lock:
            if self._served is None:
                self._served = self._contact()
        return self._served

    def _contact(self) -> Served:
        try:
            response = self.server.get("/v1/models")
        except ServerGone as gone:
            raise ModelError(f"cannot reach {self.server.url}: {gone}") from None
        raise_for(response, self.server)
        try:
            listed = [m for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"{self.server.url} is not an OpenAI-compatible API "
                             "(GET /v1/models did not list models)") from None
        names = [m["id"] for m in listed]
        name = self._wanted or (names[0] if names else None)
        if name is None or name not in names:
            have = ", ".join(names) or "none"
            raise ModelError(f"{self.server.url} does not serve {name!r} (it serves: {have})")
        about = next(m for m in listed if m["id"] == name)
        props = self.server.get("/props")
        info = props.json() if props.status_code == 200 else {}
        if not info.get("chat_template") and self.local is not None:  # the tokenizer named
            tokenizer = self.local.tokenizer
            info = {"chat_template": tokenizer.chat_template, "bos_token": tokenizer.bos_token,
                    "eos_token": tokenizer.eos_token}
        template = info.get("chat_template") or None
        specials = {k: info.get(k) or "" for k in ("bos_token", "eos_token")}
        positions = about.get("max_model_len") or info.get("max_model_len")
        return Served(name, positions, template, specials, names)

    @property
    def name(self) -> str:
        return self.served.name

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def local(self) -> LocalEngine | None:
        """The tokenizer MEMPIPE_TOKENIZER names (a model mempipe can load), for a server
        that neither counts tokens nor gives its chat template (Ollama); only its
        tokenizer is loaded."""
        name = os.environ.get("MEMPIPE_TOKENIZER")
        if name and (self._local is None or self._local.name != name):
            self._local = LocalEngine(name)
        return self._local if name else None

    @property
    def capabilities(self) -> frozenset[Capability]:
        if self._echoes is None:
            self._echoes = self._echo_form() if self.served.template else ""
        return frozenset({"scoring"}) if self._echoes else frozenset()

    def _echo_form(self) -> str:
        """How the server gives prompt tokens' log-probabilities, asked once: "together"
        (several prompts in one request of no tokens: mempipe serve, vLLM), "one by one"
        (one prompt and one token per request: llama-cpp-python, which takes neither a
        list nor 0 as "no tokens"), or "" (not at all)."""
        for form, prompt in (("together", ["Hello, world.", "Hello, there."]),
                             ("one by one", "Hello, world.")):
            body = {"model": self.name, "prompt": prompt, "echo": True, "logprobs": 0,
                    "max_tokens": 0 if form == "together" else 1, "temperature": 0.0}
            response = self.server.post("/v1/completions", body)
            if response.status_code == 200:
                choices = response.json().get("choices") or [{}]
                if "token_logprobs" in (choices[0].get("logprobs") or {}):
                    return form
        return ""

    # -- tokens ---------------------------------------------------------------------
    def count_tokens(self, texts: list[str]) -> list[int]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._counts))
        if missing:
            self._counts.update(zip(missing, self._tokenize(missing)))
        return [self._counts[t] for t in texts]

    def _tokenize(self, texts: list[str]) -> list[int]:
        """Token counts from the server: in one request where it takes a list (`mempipe
        serve`), else one request per text, in the first form the server knows."""
        if "list" not in self._untokenizing:
            response = self.server.post("/tokenize", {"model": self.name, "prompt": texts})
            if response.status_code == 200 and "counts" in response.json():
                return [int(n) for n in response.json()["counts"]]
            self._untokenizing.add("list")  # asked once, not before every count
        return [self._tokenize_one(t) for t in texts]

    def _tokenize_one(self, text: str) -> int:
        for path, body in (  # vLLM's and llama.cpp's server's; llama-cpp-python's
                ("/tokenize", {"model": self.name, "prompt": text, "content": text,
                               "add_special_tokens": False}),
                ("/extras/tokenize/count", {"model": self.name, "input": text})):
            if path in self._untokenizing:
                continue
            response = self.server.post(path, body)
            if response.status_code in (404, 405):
                self._untokenizing.add(path)
                continue
            raise_for(response, self.server)
            found = response.json()
            return int(found["count"]) if "count" in found else len(found["tokens"])
        if self.local is not None:
            return self.local.count_tokens([text])[0]
        raise ModelError(f"{self.server.url} offers no way to count tokens, and mempipe does "
                         "not guess them: name the model's tokenizer with MEMPIPE_TOKENIZER, "
                         "or serve it with a server that counts (mempipe serve, vLLM, "
                         "llama.cpp's server)")

    def prompt_tokens(self, messages: list[Message]) -> int:
        key = tuple((m.role, m.content) for m in messages)
        if key not in self._framed:
            self._framed[key] = self._count_framed(messages)
        return self._framed[key]

    def _count_framed(self, messages: list[Message]) -> int:
        """The framed prompt's tokens: rendered by the server's template where it has one,
        else asked of `/tokenize` with the messages (vLLM, mempipe serve), else measured by
        a one-token completion's usage."""
        if self.served.template:
            return self.count_tokens([self.framed(messages)])[0]
        body = {"model": self.name, "messages": _chat(messages),
                "add_generation_prompt": True}
        response = self.server.post("/tokenize", body)
        if response.status_code == 200 and "count" in response.json():
            return int(response.json()["count"])
        response = self.server.post("/v1/chat/completions", {**body, "max_tokens": 1})
        raise_for(response, self.server)
        return int(response.json()["usage"]["prompt_tokens"])

    def framed(self, messages: list[Message]) -> str:
        """The prompt text as the server's chat template frames it; a final assistant
        message is a reply begun, which the model continues."""
        from mempipe.engine.templates import render

        served = self.served
        if served.template is None:
            raise ModelError(f"{self.url} gives no chat template, so mempipe cannot score")
        replying = bool(messages) and messages[-1].role == "assistant"
        chat = _chat(messages[:-1] if replying else messages)
        begun = messages[-1].content if replying else ""
        return render(served.template, chat, served.specials) + begun

    # -- generation -----------------------------------------------------------------
    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        """The chat completion for `request`, or why this server cannot run it."""
        if request.memories or request.adapter is not None:
            raise ModelError(f"{self.url} reads no key/value memories or adapters "
                             "(--tier kv, --tier params): they run in the local engine")
        if request.window is not None:
            raise ModelError(f"{self.url}: Λ-shaped attention (--stream-context) runs in "
                             "the local engine only")
        prompt = self.prompt_tokens(request.messages)
        if prompt + request.max_tokens > request.budget:
            raise BudgetExceeded(
                f"{request.agent}: prompt of {prompt} tokens + {request.max_tokens} to "
                f"generate exceeds its budget of {request.budget} tokens")
        messages = request.messages
        body: dict[str, Any] = {"model": self.name, "messages": _chat(messages),
                                "max_tokens": request.max_tokens,
                                "temperature": request.temperature, "top_p": request.top_p,
                                "stream": stream}
        if messages and messages[-1].role == "assistant":  # a reply begun, continued
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if request.top_k:
            body["top_k"] = request.top_k
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        return body

    async def generate(self, request: GenerationRequest) -> Generation:
        # Counting the prompt may ask the server: off the event loop, so that concurrent
        # requests do not queue behind it.
        body = await anyio.to_thread.run_sync(self._body, request, False)
        started = time.perf_counter()
        response = await self.server.apost("/v1/chat/completions", body)
        raise_for(response, self.server)
        found = response.json()
        choice, usage = found["choices"][0], found.get("usage") or {}
        text = choice["message"].get("content") or ""
        return Generation(text=text.strip(), seconds=time.perf_counter() - started,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          finish_reason="length" if choice.get("finish_reason") == "length"
                          else "stop")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        body = await anyio.to_thread.run_sync(self._body, request, True)
        async for event in self.server.events("/v1/chat/completions", body):
            for choice in event.get("choices", []):
                if piece := (choice.get("delta") or {}).get("content"):
                    yield piece

    # -- reading without generating -------------------------------------------------
    def score(self, messages: list[Message], options: list[str],
              memories: list[Any] | None = None, adapter: Any = None) -> list[float]:
        if memories or adapter is not None:
            raise ModelError(f"{self.url} reads no key/value memories or adapters")
        if not options:
            return []
        prompt = self.framed(messages)
        read = self._echo([prompt + option for option in options], len(prompt))
        return [_mean([p for start, _, p in tokens if start >= len(prompt)])
                for tokens in read]

    def surprise(self, text: str) -> list[tuple[int, int, float]]:
        (tokens,) = self._echo([text])
        ends = [start for start, _, _ in tokens[1:]] + [len(text)]
        return [(start, end, -p if p is not None else 0.0)
                for (start, _, p), end in zip(tokens, ends)]

    def _echo(self, prompts: list[str], start: int = 0
              ) -> list[list[tuple[int, str, float | None]]]:
        """Each prompt's tokens as (character offset, text, log-probability), from
        completions that echo their prompts, in the form the server takes; those before
        `start` may have none (mempipe serve reads the prompts' shared start once)."""
        if "scoring" not in self.capabilities:
            raise ModelError(f"{self.url} gives no log-probabilities of prompt tokens")
        together = self._echoes == "together"
        read: list[list[tuple[int, str, float | None]]] = []
        for batch in [prompts] if together else [[p] for p in prompts]:
            body = {"model": self.name, "prompt": batch if together else batch[0],
                    "max_tokens": 0 if together else 1, "echo": True, "logprobs": 0,
                    "temperature": 0.0, **({"logprobs_from": start} if together else {})}
            response = self.server.post("/v1/completions", body)
            raise_for(response, self.server)
            choices = sorted(response.json()["choices"], key=lambda c: int(c.get("index", 0)))
            for prompt, choice in zip(batch, choices):
                logprobs = choice.get("logprobs") or {}
                read.append([t for t in zip(logprobs["text_offset"], logprobs["tokens"],
                                            logprobs["token_logprobs"])
                             if t[0] < len(prompt)])  # the prompt's, not a token written
        return read


def _chat(messages: list[Message]) -> list[dict[str, str]]:
    return [m.model_dump() for m in messages]


def _mean(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else float("-inf")
