"""One OpenAI-compatible server as this process reaches it: a pooled httpx client (one
for synchronous callers, one per event loop for the others), the key, and retries with
exponential backoff and jitter on refused connections, 429 and 5xx, honouring
`Retry-After`. Shared by the HTTP engine and the remote embedder."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import os
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from mempipe.errors import MempipeError, ModelError

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
# Failures that happen before a request was taken, or while the server dies under it:
# in every case no reply is coming from this server.
GONE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
        httpx.ReadError, httpx.WriteError)
TIMEOUT = httpx.Timeout(600.0, connect=5.0)  # a long prompt on a CPU takes minutes
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)


class ServerGone(MempipeError):
    """A server stopped answering mid-run (exit 1): what was in flight there is lost."""

    def __init__(self, url: str, why: str, in_flight: int):
        self.url = url
        super().__init__(f"{url} stopped answering ({why}) with {in_flight} "
                         f"request{'s' if in_flight != 1 else ''} in flight")


def split_url(spec: str) -> tuple[str, str | None]:
    """`http://HOST:PORT/v1#NAME` as (base URL, model name or None)."""
    url, _, name = spec.partition("#")
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return url, name or None


def api_key() -> str | None:
    return os.environ.get("MEMPIPE_API_KEY") or os.environ.get("OPENAI_API_KEY")


def _delay(attempt: int, response: httpx.Response | None) -> float:
    """Seconds before the next try: the server's `Retry-After` where it says, else
    exponential backoff with full jitter."""
    after = response.headers.get("retry-after") if response is not None else None
    if after:
        try:
            return min(60.0, max(0.0, float(after)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(after)
            if when is not None:
                return min(60.0, max(0.0, when.timestamp() - time.time()))
    return random.uniform(0, 0.25 * 2 ** attempt)


@dataclass(eq=False)
class Server:
    """An OpenAI-compatible server at `url` (ending in /v1); `retries` tries after the
    first for a refused connection, 429 or 5xx."""

    url: str
    key: str | None = None
    retries: int = 4
    in_flight: int = 0
    _client: httpx.Client | None = None
    _async: Any = field(default_factory=weakref.WeakKeyDictionary)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> str:
        """The server's root, where `/tokenize`, `/props` and `/health` live."""
        return self.url.removesuffix("/v1")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(headers=self._headers(), timeout=TIMEOUT,
                                            limits=LIMITS)
            return self._client

    def async_client(self) -> httpx.AsyncClient:
        """This event loop's pooled client (an AsyncClient belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._async:
            self._async[loop] = httpx.AsyncClient(headers=self._headers(), timeout=TIMEOUT,
                                                  limits=LIMITS)
        return self._async[loop]

    def _path(self, path: str) -> str:
        return (self.url if path.startswith("/v1/") else self.root) + path.removeprefix("/v1")

    def _gone(self, error: Exception) -> ServerGone:
        why = type(error).__name__ if not str(error) else str(error).split("\n")[0]
        return ServerGone(self.url, why, self.in_flight)

    def get(self, path: str) -> httpx.Response:
        return self._send("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._send("POST", path, body)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        self.in_flight += 1
        try:
            for attempt in itertools.count():
                try:
                    response = self.client().request(method, self._path(path), json=body)
                except GONE as error:
                    time.sleep(self._wait(attempt, error) or 0.0)
                    continue
                if (wait := self._wait(attempt, response)) is None:
                    return response
                time.sleep(wait)
            raise AssertionError("unreachable")
        finally:
            self.in_flight -= 1

    async def apost(self, path: str, body: dict[str, Any]) -> httpx.Response:
        self.in_flight += 1
        try:
            for attempt in itertools.count():
                try:
                    response = await self.async_client().post(self._path(path), json=body)
                except GONE as error:
                    await asyncio.sleep(self._wait(attempt, error) or 0.0)
                    continue
                if (wait := self._wait(attempt, response)) is None:
                    return response
                await asyncio.sleep(wait)
            raise AssertionError("unreachable")
        finally:
            self.in_flight -= 1

    def _wait(self, attempt: int, outcome: httpx.Response | Exception) -> float | None:
        """Seconds to wait before trying again, None to take the response as it is; a
        connection still failing after the last retry is the server gone."""
        if isinstance(outcome, Exception):
            if attempt >= self.retries:
                raise self._gone(outcome) from None
            return _delay(attempt, None)
        if outcome.status_code not in RETRIED_STATUS or attempt >= self.retries:
            return None
        return _delay(attempt, outcome)

    async def events(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON events of a server-sent event stream, until `[DONE]`; leaving early
        closes the stream, which frees the request's place on the server."""
        self.in_flight += 1
        try:
            for attempt in range(self.retries + 1):
                started = False
                try:
                    async with self.async_client().stream(
                            "POST", self._path(path), json=body) as response:
                        if (wait := self._wait(attempt, response)) is not None:
                            await asyncio.sleep(wait)
                            continue
                        if response.status_code >= 400:
                            await response.aread()
                            raise_for(response, self)
                        async for line in response.aiter_lines():
                            data = line.removeprefix("data:").strip()
                            if not line.startswith("data:") or not data:
                                continue
                            if data == "[DONE]":
                                return
                            started = True
                            yield json.loads(data)
                        return
                except GONE as error:
                    if started:
                        raise self._gone(error) from None
                    await asyncio.sleep(self._wait(attempt, error) or 0.0)
        finally:
            self.in_flight -= 1


def raise_for(response: httpx.Response, server: Server) -> None:
    """Nothing for a success; else the server's refusal as one line: a wrong key or an
    unknown model is the user's to fix (exit 2), anything else a failure (exit 1)."""
    if response.status_code < 400:
        return
    detail = message(response)
    if response.status_code in (401, 403):
        raise ModelError(f"{server.url} refused the API key ({response.status_code}): "
                         "set MEMPIPE_API_KEY or OPENAI_API_KEY")
    if response.status_code in (400, 404, 413, 422):
        raise ModelError(f"{server.url}: {detail}")
    raise MempipeError(f"{server.url}: {detail}")


def message(response: httpx.Response) -> str:
    """What a failed response says, as one line."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        body = error.get("message", error) if isinstance(error, dict) else error
    text = " ".join(str(body).split())[:300]
    return f"{response.status_code} {response.reason_phrase}: {text}".rstrip(": ")
