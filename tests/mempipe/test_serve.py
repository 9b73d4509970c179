"""`mempipe serve` and the HTTP engine, together: the tiny model served by a real uvicorn
server in a thread, read through `HTTPEngine`, compared with the same model in process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from bench.serve import free_port
from mempipe import serve
from mempipe.engine import GenerationRequest, Message
from mempipe.engine.http import HTTPEngine
from mempipe.engine.local import LocalEngine
from mempipe.engine.server import Server, ServerGone, _delay
from mempipe.errors import BudgetExceeded, ModelError, UsageError
from mempipe.memory.embed import Embedder, RemoteEmbedder, default_embedder

QUESTION = [Message(role="system", content="Answer briefly."),
            Message(role="user", content="Who is the Queen of Hearts?")]


def start(service: serve.Service) -> tuple[str, object]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), port=port, log_level="warning",
                                           lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            key = {"Authorization": f"Bearer {service.key}"} if service.key else {}
            if httpx.get(f"{url}/health", headers=key).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return url + "/v1", server


@pytest.fixture(scope="module")
def local(tiny_model: Path) -> Iterator[LocalEngine]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMPIPE_DTYPE", "float32")
        yield LocalEngine(str(tiny_model))


@pytest.fixture(scope="module")
def served(local: LocalEngine) -> Iterator[tuple[str, serve.Service]]:
    service = serve.Service(local, Embedder(), limits=serve.Limits(body_bytes=100_000,
                                                                    max_tokens=64))
    url, server = start(service)
    yield url, service
    server.should_exit = True  # type: ignore[attr-defined]


def ask(max_tokens: int = 12, **given: object) -> GenerationRequest:
    return GenerationRequest(messages=QUESTION, max_tokens=max_tokens, agent="test",
                             **given)


def test_the_served_model_answers_as_it_does_in_process(served, local) -> None:
    url, _ = served
    remote = HTTPEngine(url)
    assert remote.name == local.name and "scoring" in remote.capabilities
    texts = ["The Queen of Hearts", "", "said the Hatter.\n\nAlice"]
    assert remote.count_tokens(texts) == local.count_tokens(texts)
    assert remote.prompt_tokens(QUESTION) == local.prompt_tokens(QUESTION)
    here, there = anyio.run(local.generate, ask()), anyio.run(remote.generate, ask())
    assert there.text == here.text and there.completion_tokens == here.completion_tokens

    async def streamed() -> str:
        return "".join([piece async for piece in remote.stream(ask())])

    assert anyio.run(streamed).strip() == here.text
    # Options that share their first words are scored over all their tokens, as here.
    options = ["the Queen", "the Queen of Hearts", "Alice", "a long answer of many words"]
    assert remote.score(QUESTION, options) == pytest.approx(local.score(QUESTION, options),
                                                            abs=1e-3)
    raw = ["Once upon a time", "The Queen said"]
    written = httpx.post(f"{url}/completions", json={"prompt": raw, "max_tokens": 4,
                                                      "temperature": 0}).json()["choices"]
    assert [c["text"] for c in sorted(written, key=lambda c: c["index"])] == [
        anyio.run(local.generate, GenerationRequest(messages=[], prompt=p, max_tokens=4,
                                                    agent="test")).text for p in raw]
    text = "Alice was beginning to get very tired of sitting by her sister on the bank."
    near = [(a, b) for a, b, _ in local.surprise(text)]
    assert [(a, b) for a, b, _ in remote.surprise(text)] == near
    assert [n for *_, n in remote.surprise(text)] == pytest.approx(
        [n for *_, n in local.surprise(text)], abs=1e-3)


def test_budgets_are_counted_with_the_servers_tokenizer(served) -> None:
    remote = HTTPEngine(served[0])
    with pytest.raises(BudgetExceeded, match="exceeds its budget of 30 tokens"):
        anyio.run(remote.generate, ask(budget=30))
    with pytest.raises(ModelError, match="key/value memories or adapters"):
        anyio.run(remote.generate, ask(adapter=object()))


def test_the_embedder_is_the_servers_when_it_serves_one(served, monkeypatch) -> None:
    url, service = served
    monkeypatch.setenv("MEMPIPE_MODEL", url)
    default_embedder.cache_clear()
    try:
        remote = default_embedder()
        assert isinstance(remote, RemoteEmbedder)
        texts = ["The Queen shouted.", "A white rabbit ran by."]
        assert remote.embed(texts) == pytest.approx(service.embedder.embed(texts), abs=1e-5)
        assert remote.count_tokens(texts) == service.embedder.count_tokens(texts)
    finally:
        default_embedder.cache_clear()


def test_bad_requests_get_a_json_error_naming_the_field(served) -> None:
    url, _ = served
    chat = f"{url}/chat/completions"
    bad = httpx.post(chat, content=b"{not json")
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
    wrong = httpx.post(chat, json={"messages": [{"role": "user", "content": "hi"}],
                                   "temperature": "hot"})
    assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "temperature"
    over = httpx.post(chat, json={"messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": 65})
    assert over.status_code == 422 and over.json()["error"]["param"] == "max_tokens"
    big = httpx.post(chat, json={"messages": [{"role": "user", "content": "x" * 200_000}]})
    assert big.status_code == 413
    other = httpx.post(chat, json={"model": "gpt-9", "messages": [
        {"role": "user", "content": "hi"}]})
    assert other.status_code == 404 and other.json()["error"]["param"] == "model"
    several = httpx.post(chat, json={"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert several.status_code == 422 and several.json()["error"]["param"] == "n"
    newer = httpx.post(chat, json={"messages": [{"role": "user", "content": "hi"}],
                                   "max_completion_tokens": 3, "temperature": 0})
    assert newer.status_code == 200 and newer.json()["usage"]["completion_tokens"] <= 3
    long = httpx.post(chat, json={"messages": [{"role": "user", "content": "word " * 9000}],
                                  "max_tokens": 8})
    assert long.status_code == 400 and "positions" in long.json()["error"]["message"]


def test_a_client_that_leaves_frees_its_place(served) -> None:
    url, service = served
    body = {"messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": 64, "stream": True}
    with httpx.stream("POST", f"{url}/chat/completions", json=body) as response:
        next(response.iter_lines())  # the first event came: the request holds a place
    for _ in range(100):
        if service._slots is not None and service._slots.value == service.limits.concurrent:
            break
        time.sleep(0.05)
    assert service._slots is not None and service._slots.value == service.limits.concurrent


def test_a_key_is_checked_on_every_request(local) -> None:
    url, server = start(serve.Service(local, Embedder(), key="s3cret"))
    try:
        assert httpx.get(f"{url}/models").status_code == 401
        assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer s3cret"}
                         ).status_code == 200
        with pytest.raises(ModelError, match="refused the API key"):
            _ = HTTPEngine(url).name
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="needs --api-key"):
        serve.serve(local.name, "0.0.0.0", 1, None, serve.Limits())


def test_a_wrong_url_or_model_is_one_line_before_any_work(served) -> None:
    with pytest.raises(ModelError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1"):
        _ = HTTPEngine(f"http://127.0.0.1:{free_port()}/v1", retries=0).name
    with pytest.raises(ModelError, match="does not serve 'nope'"):
        _ = HTTPEngine(served[0] + "#nope").name


def test_retries_honour_retry_after_and_give_up_on_a_dead_server() -> None:
    tries = []

    def busy(request: httpx.Request) -> httpx.Response:
        tries.append(time.monotonic())
        if len(tries) < 3:
            return httpx.Response(503, headers={"Retry-After": "0.2"})
        return httpx.Response(200, json={"ok": True})

    server = Server("http://example.invalid/v1", retries=3)
    server._client = httpx.Client(transport=httpx.MockTransport(busy))
    assert server.get("/v1/models").json() == {"ok": True}
    assert len(tries) == 3 and tries[1] - tries[0] >= 0.2
    assert 0 <= _delay(3, None) <= 2.0

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    server._client = httpx.Client(transport=httpx.MockTransport(refused))
    server.retries = 1
    with pytest.raises(ServerGone, match=r"example\.invalid/v1 stopped answering"):
        server.get("/v1/models")


def test_serve_refuses_what_it_cannot_serve_in_one_line() -> None:
    from tests.conftest import mempipe
    from tests.mempipe.test_cli import one_line_error

    one_line_error(mempipe("serve", "--model", "/no/such/model", "--port", str(free_port())),
                   2, "unknown model: /no/such/model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(mempipe("serve", "--port", str(port)), 2,
                       f"cannot listen on 127.0.0.1:{port}")
    one_line_error(mempipe("serve", "--host", "0.0.0.0", "--port", str(free_port())), 2,
                   "needs --api-key")


def test_the_memory_tiers_are_reachable_through_the_extension_field(served, local) -> None:
    """`mempipe: {memories: [...], adapter: ...}` reads the server's own store: the
    answer is the one the engine gives in process with the same memories and adapter."""
    from mempipe.engine.base import MEMORIES
    from mempipe.memory import Memory, kv, params, taught
    from mempipe.memory.store import Store

    url, _ = served
    books = Memory("books")
    books.remember("Alice met the Queen of Hearts. The Queen said: off with her head!")
    books.encode_kv(local)
    ids = [p.id for p in Store().passages("books")]
    blobs, _ = Store().kv(ids)
    adapter = local.new_adapter(2, about={"namespace": "books",
                                          "content": taught.content(books)})
    adapter.save(params.path_for("books", local.fingerprint))
    messages = [Message(role="user", content=f"{MEMORIES}\n\nWho said off with her head?")]
    here = anyio.run(local.generate, GenerationRequest(
        messages=messages, max_tokens=8, agent="test", adapter=adapter,
        memories=[kv.load(blobs[i], local.fingerprint) for i in ids]))
    body = {"messages": [m.model_dump() for m in messages], "max_tokens": 8,
            "temperature": 0, "mempipe": {"memories": ids, "adapter": "books"}}
    there = httpx.post(f"{url}/chat/completions", json=body)
    assert there.status_code == 200, there.text
    assert there.json()["choices"][0]["message"]["content"] == here.text
    missing = httpx.post(f"{url}/chat/completions", json={**body, "mempipe": {"adapter": "x"}})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "mempipe.adapter"
    unknown = httpx.post(f"{url}/chat/completions", json={**body, "mempipe": {"memories": [999]}})
    assert unknown.status_code == 422 and "999" in unknown.json()["error"]["message"]
