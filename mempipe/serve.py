"""`mempipe serve`: the local engine behind an OpenAI-compatible API, so that other
processes (a fast CLI, other tools, other machines) share one loaded model and every
client's requests join its one continuous batch.

Starlette and uvicorn: the standard ASGI toolkit and server (uvicorn finishes in-flight
requests on SIGTERM); request bodies are checked by pydantic models, as the engine's are,
so a bad field is a 422 naming it and never a 500 or a dropped connection."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mempipe.concurrent import gather
from mempipe.engine import torch_thread
from mempipe.engine.base import GenerationRequest, Message
from mempipe.engine.local import LocalEngine
from mempipe.errors import MempipeError, UsageError
from mempipe.memory.embed import NAME as EMBEDDER
from mempipe.memory.embed import Embedder

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
B = TypeVar("B", bound=BaseModel)


@dataclass
class Limits:
    """What one request, and all of them together, may ask of the server."""

    body_bytes: int = 4 * 2**20
    max_tokens: int = 4096
    concurrent: int = 64  # requests the engine holds at once; the rest wait
    waiting: int = 4096  # waiting beyond this: 429 with Retry-After
    inputs: int = 2048  # prompts or texts in one request


class Refused(Exception):
    """A request answered with an error status and a JSON error naming what was wrong."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.param, self.headers = status, param, headers or {}

    def response(self) -> JSONResponse:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error" \
            if self.status < 500 else "server_error"
        return JSONResponse({"error": {"message": str(self), "type": kind,
                                       "param": self.param}},
                            status_code=self.status, headers=self.headers)


# -- request bodies ----------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields mempipe ignores

    model: str | None = None


class Extension(BaseModel):
    """mempipe's extension field `mempipe` of a completion: the memory tiers, read from
    the server's own memory store (its MEMPIPE_HOME)."""

    model_config = ConfigDict(extra="forbid")

    # "reader": the memory reader (memory train-reader); a namespace: the adapter
    # `mempipe memory train NAMESPACE` made of it (tier 3).
    adapter: str | None = None
    # Passages whose key/value memories (remember --tier kv) go where a message holds
    # <|mempipe:memories|> (tier 2), read without a prefill.
    memories: list[int] = Field(default_factory=list, max_length=256)


class _Sampling(_Body):
    mempipe: Extension | None = None
    n: int = Field(default=1, ge=1, le=1)  # one choice per request
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # its newer name


class CompletionBody(_Sampling):
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    # mempipe's extension: the character offset in every prompt from which prompt
    # tokens' log-probabilities are wanted; the prompts' shared start before it is read
    # once, its tokens' log-probabilities null. How a client scores options cheaply.
    logprobs_from: int | None = Field(default=None, ge=0)


class EmbeddingBody(_Body):
    input: str | list[str]


class TokenizeBody(_Body):
    prompt: str | list[str] | None = None
    content: str | None = None  # llama.cpp's server's name for it
    messages: list[Message] | None = None


# -- the application ----------------------------------------------------------------------
@dataclass
class Service:
    """What the routes share: the engine, the embedder, the key and the limits."""

    engine: LocalEngine
    embedder: Embedder
    key: str | None = None
    limits: Limits = field(default_factory=Limits)
    ready: bool = False
    waiting: int = 0
    announce: str = ""  # said on stderr once the model is loaded
    stop: Callable[[], None] = lambda: None  # ends the server
    failed: MempipeError | None = None
    _slots: anyio.Semaphore | None = None

    def check_room(self) -> None:
        """429 where the engine is full and too many requests already wait."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self.limits.concurrent)
        if self._slots.value == 0 and self.waiting >= self.limits.waiting:
            raise Refused(429, "too many requests waiting; try again",
                          headers={"Retry-After": "1"})

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A place among the requests the engine holds; 429 when too many wait."""
        self.check_room()
        assert self._slots is not None
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    def load(self) -> None:
        """Loads the model (and the embedder) before the first request: /health says 200
        from then on. A model that does not load stops the server (`failed` says why)."""
        try:
            torch_thread.run(lambda: self.engine.batcher)
            self.embedder.count_tokens(["warm"])
        except MempipeError as error:
            self.failed = error
            self.stop()
            return
        self.ready = True
        if self.announce:
            print(self.announce, file=sys.stderr, flush=True)

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(anyio.to_thread.run_sync, self.load)
                yield
                tasks.cancel_scope.cancel()

        routes = [Route("/health", self._guarded(self.health)),
                  Route("/props", self._guarded(self.props)),
                  Route("/tokenize", self._guarded(self.tokenize), methods=["POST"]),
                  Route("/v1/models", self._guarded(self.models)),
                  Route("/v1/chat/completions", self._guarded(self.chat), methods=["POST"]),
                  Route("/v1/completions", self._guarded(self.completions), methods=["POST"]),
                  Route("/v1/embeddings", self._guarded(self.embeddings), methods=["POST"])]
        return Starlette(routes=routes, lifespan=lifespan)

    def _guarded(self, handler: Callable[[Request], Awaitable[Response]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind the key check, with every failure a JSON error."""

        async def guarded(request: Request) -> Response:
            try:
                try:
                    self._check_key(request)
                    if request.url.path != "/health" and not self.ready:
                        raise Refused(503, "the model is loading",
                                      headers={"Retry-After": "1"})
                    return await handler(request)
                except BaseExceptionGroup as group:  # one failure among concurrent prompts
                    raise _first(group) from None
            except Refused as refused:
                return refused.response()
            except MempipeError as error:  # a request the engine cannot run
                return Refused(400, str(error)).response()
            except Exception as error:  # never a dropped connection
                return Refused(500, f"{type(error).__name__}: {error}").response()

        return guarded

    def _check_key(self, request: Request) -> None:
        if self.key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), self.key.encode()):
            raise Refused(401, "a wrong or missing API key (Authorization: Bearer KEY)")

    async def _body(self, request: Request, model: type[B]) -> B:
        """The request's JSON as `model`: 413 over the size limit, 400 for JSON that does
        not parse, 422 naming the first field that is wrong."""
        size, parts = 0, []
        async for part in request.stream():
            size += len(part)
            if size > self.limits.body_bytes:
                raise Refused(413, f"the request body is over {self.limits.body_bytes} bytes")
            parts.append(part)
        try:
            data = json.loads(b"".join(parts) or b"null")
        except ValueError as error:
            raise Refused(400, f"the body is not JSON: {error}") from None
        try:
            body = model.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            raise Refused(422, f"{where or 'body'}: {first['msg']}", where) from None
        if body.model not in (None, self.engine.name, EMBEDDER):
            raise Refused(404, f"no model {body.model!r} here (serving {self.engine.name})",
                          "model")
        return body

    # -- routes ---------------------------------------------------------------------
    async def health(self, _: Request) -> Response:
        if not self.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, _: Request) -> Response:
        engine = self.engine
        return JSONResponse({"object": "list", "data": [
            {"id": engine.name, "object": "model", "owned_by": "mempipe",
             "max_model_len": engine.max_positions},
            {"id": EMBEDDER, "object": "model", "owned_by": "mempipe"}]})

    async def props(self, _: Request) -> Response:
        tokenizer = self.engine.tokenizer
        return JSONResponse({"model": self.engine.name,
                             "chat_template": tokenizer.chat_template,
                             "bos_token": tokenizer.bos_token or "",
                             "eos_token": tokenizer.eos_token or "",
                             "max_model_len": self.engine.max_positions})

    async def tokenize(self, request: Request) -> Response:
        body = await self._body(request, TokenizeBody)
        if body.model == EMBEDDER:
            texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt or []
            counts = await anyio.to_thread.run_sync(self.embedder.count_tokens, texts)
            return JSONResponse({"counts": counts} if isinstance(body.prompt, list)
                                else {"count": counts[0] if counts else 0})
        engine = self.engine
        if body.messages is not None:
            ids = engine.prompt_ids(body.messages)
        elif isinstance(body.prompt, list):
            self._check_count(body.prompt)
            return JSONResponse({"counts": engine.count_tokens(body.prompt),
                                 "max_model_len": engine.max_positions})
        else:
            text = body.prompt if body.prompt is not None else body.content
            if text is None:
                raise Refused(422, "prompt: give prompt, content or messages", "prompt")
            ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        return JSONResponse({"tokens": ids, "count": len(ids),
                             "max_model_len": engine.max_positions})

    def _check_count(self, inputs: list[str]) -> None:
        if not inputs or len(inputs) > self.limits.inputs:
            raise Refused(422, f"give 1 to {self.limits.inputs} inputs, not {len(inputs)}")

    def _max_tokens(self, asked: int | None, default: int) -> int:
        tokens = default if asked is None else asked
        if tokens > self.limits.max_tokens:
            raise Refused(422, f"max_tokens: at most {self.limits.max_tokens}", "max_tokens")
        return tokens

    def _request(self, body: _Sampling, max_tokens: int, messages: list[Message],
                 prompt: str | None = None, tiers: dict[str, Any] | None = None
                 ) -> GenerationRequest:
        return GenerationRequest(messages=messages, prompt=prompt, max_tokens=max_tokens,
                                 temperature=body.temperature, top_p=body.top_p,
                                 top_k=body.top_k, seed=body.seed, stop=body.stops(),
                                 budget=2**31, agent="request",  # positions bound it
                                 **(tiers or {}))

    async def _tiers(self, extension: Extension | None) -> dict[str, Any]:
        """The memories and adapter a request's `mempipe` field names, loaded."""
        if extension is None:
            return {}
        return await anyio.to_thread.run_sync(self._load_tiers, extension)

    def _load_tiers(self, extension: Extension) -> dict[str, Any]:
        from mempipe.memory import Memory, kv, params, reader
        from mempipe.memory.store import Store

        engine, found = self.engine, {}
        if extension.adapter == "reader":
            found["adapter"] = reader.load(engine)
        elif extension.adapter is not None:
            store = Store()
            if extension.adapter not in store.namespaces():
                raise Refused(422, f"mempipe.adapter: no namespace {extension.adapter!r} "
                              "here", "mempipe.adapter")
            found["adapter"], _ = params.load(Memory(extension.adapter, store), engine)
        if extension.adapter is not None and found["adapter"] is None:
            raise Refused(422, f"mempipe.adapter: {extension.adapter} has no adapter for "
                          "this model", "mempipe.adapter")
        if extension.memories:
            blobs, corrupt = Store().kv(extension.memories)
            missing = [i for i in extension.memories if i not in blobs]
            if missing:
                what = "fail their checksum" if corrupt else "have no key/value memories"
                raise Refused(422, f"mempipe.memories: passages {missing} {what}",
                              "mempipe.memories")
            found["memories"] = [kv.load(blobs[i], engine.fingerprint)
                                 for i in extension.memories]
        return found

    async def chat(self, request: Request) -> Response:
        body = await self._body(request, ChatBody)
        asked = body.max_completion_tokens or body.max_tokens
        wanted = self._request(body, self._max_tokens(asked, 256), body.messages,
                               tiers=await self._tiers(body.mempipe))
        made = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()),
                "model": self.engine.name}
        if body.stream:
            self.check_room()  # before the status goes out with the stream
            return StreamingResponse(self._chat_events(wanted, made),
                                     media_type="text/event-stream")
        async with self.slot():
            done = await _unless_disconnected(request, self.engine.generate(wanted))
        return JSONResponse({
            **made, "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": done.finish_reason,
                         "message": {"role": "assistant", "content": done.text}}],
            "usage": _usage(done.prompt_tokens, done.completion_tokens)})

    async def _chat_events(self, wanted: GenerationRequest, made: dict[str, Any]
                           ) -> AsyncIterator[str]:
        """Server-sent chunks; a client that leaves cancels this, which frees its row."""
        def chunk(delta: dict[str, str], finish: str | None) -> str:
            return "data: " + json.dumps({**made, "object": "chat.completion.chunk",
                                          "choices": [{"index": 0, "delta": delta,
                                                       "finish_reason": finish}]}) + "\n\n"

        async with self.slot():
            yield chunk({"role": "assistant"}, None)
            try:
                async for piece in self.engine.stream(wanted):
                    yield chunk({"content": piece}, None)
            except MempipeError as error:  # the status is sent: the error goes in the stream
                yield "data: " + json.dumps({"error": {"message": str(error)}}) + "\n\n"
                return
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

    async def completions(self, request: Request) -> Response:
        body = await self._body(request, CompletionBody)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        self._check_count(prompts)
        if body.stream:
            raise Refused(422, "stream: streaming is offered by /v1/chat/completions", "stream")
        if body.logprobs is not None and body.max_tokens > 0:
            raise Refused(422, "logprobs: given for echoed prompts, with max_tokens 0",
                          "logprobs")
        max_tokens = self._max_tokens(body.max_tokens, 16)
        made = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion",
                "created": int(time.time()), "model": self.engine.name}
        if max_tokens == 0:
            read = await self._echoed(prompts, body.logprobs_from) \
                if body.logprobs is not None else None
            choices = [{"index": i, "text": p if body.echo else "", "finish_reason": "length",
                        "logprobs": read[i] if read else None} for i, p in enumerate(prompts)]
            counts = self.engine.count_tokens(prompts)
            return JSONResponse({**made, "choices": choices, "usage": _usage(sum(counts), 0)})

        if body.mempipe and body.mempipe.memories:
            raise Refused(422, "mempipe.memories: memories are read where a chat message "
                          "holds their mark: use /v1/chat/completions", "mempipe.memories")
        tiers = await self._tiers(body.mempipe)

        async def one(prompt: str) -> Any:
            async with self.slot():
                return await self.engine.generate(self._request(body, max_tokens, [], prompt,
                                                                tiers))

        # Every prompt at once: the slots bound what the engine holds.
        done = await _unless_disconnected(request, gather(one, prompts, len(prompts)))
        choices = [{"index": i, "text": (p if body.echo else "") + d.text, "logprobs": None,
                    "finish_reason": d.finish_reason}
                   for i, (p, d) in enumerate(zip(prompts, done))]
        return JSONResponse({**made, "choices": choices, "usage": _usage(
            sum(d.prompt_tokens for d in done), sum(d.completion_tokens for d in done))})

    async def _echoed(self, prompts: list[str], start: int | None) -> list[dict[str, Any]]:
        """Each prompt's tokens with their log-probabilities, OpenAI's `logprobs` shape:
        every token's but the first, each prompt read on its own (any length, in
        windows); or, with `start` (`logprobs_from`) and several prompts, the tokens from
        `start` on, after the start the prompts share there, which is read once."""
        engine = self.engine
        if len(prompts) == 1 or start is None:
            found = []
            for prompt in prompts:
                async with self.slot():
                    read = await anyio.to_thread.run_sync(engine.surprise, prompt)
                found.append({"tokens": [prompt[a:b] for a, b, _ in read],
                              "text_offset": [a for a, _, _ in read],
                              "token_logprobs": [None] + [-n for _, _, n in read[1:]]})
            return found
        encoded = [engine.tokenizer(p, add_special_tokens=False, return_offsets_mapping=True)
                   for p in prompts]
        ids = [e["input_ids"] for e in encoded]
        offsets = [[a for a, _ in e["offset_mapping"]] for e in encoded]
        before = min(sum(1 for a in o if a < start) for o in offsets)  # tokens before start
        shared = 0
        while shared < before and len({i[shared] for i in ids}) == 1:
            shared += 1
        if shared == 0 or any(len(i) == shared for i in ids):
            return await self._echoed(prompts, None)  # nothing to share, or nothing after
        if shared + max(len(i) - shared for i in ids) > engine.max_positions:
            raise Refused(400, f"prompt: over the model's {engine.max_positions} positions",
                          "prompt")
        async with self.slot():
            rows = await anyio.to_thread.run_sync(engine.continuations, ids[0][:shared],
                                                  [i[shared:] for i in ids])
        tokenizer = engine.tokenizer
        return [{"tokens": tokenizer.convert_ids_to_tokens(i),
                 "text_offset": o, "token_logprobs": [None] * shared + r}
                for i, o, r in zip(ids, offsets, rows)]

    async def embeddings(self, request: Request) -> Response:
        body = await self._body(request, EmbeddingBody)
        texts = [body.input] if isinstance(body.input, str) else body.input
        self._check_count(texts)
        async with self.slot():
            vectors = await anyio.to_thread.run_sync(self.embedder.embed, texts)
        tokens = sum(await anyio.to_thread.run_sync(self.embedder.count_tokens, texts))
        return JSONResponse({"object": "list", "model": EMBEDDER,
                             "data": [{"object": "embedding", "index": i,
                                       "embedding": v.tolist()}
                                      for i, v in enumerate(vectors)],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


T = TypeVar("T")


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; a client that disconnects first cancels it, which frees its batch
    rows (its answer would go nowhere)."""
    result: list[T] = []
    failed: list[Exception] = []

    async with anyio.create_task_group() as tasks:
        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        try:
            result.append(await work)
        except Exception as error:  # raised as itself, not inside an exception group
            failed.append(error)
        tasks.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not result:
        raise Refused(499, "the client disconnected")
    return result[0]


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first failure an exception group holds, however deeply."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def serve(model: str, host: str, port: int, key: str | None, limits: Limits,
          log_level: Literal["warning", "info"] = "warning") -> None:
    """Serve `model` until SIGTERM or Ctrl-C, which finish the requests in flight."""
    import uvicorn

    if host not in LOOPBACK and not key:
        raise UsageError(f"serving on {host} (not loopback) needs --api-key or MEMPIPE_API_KEY")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    service = Service(LocalEngine(model), Embedder(), key, limits,
                      announce=f"mempipe: serving {model} at http://{host}:{port}/v1")
    config = uvicorn.Config(service.app(), host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=60, lifespan="on")
    server = uvicorn.Server(config)
    service.stop = lambda: setattr(server, "should_exit", True)
    server.run()
    if service.failed is not None:
        raise service.failed
