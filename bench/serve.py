"""The default model over HTTP (`mempipe serve`) beside the same model in process, one run:

    python bench/serve.py --json [--limit N] [--requests 1000] [--few N]

- overhead: one 4-token completion at a time, in process and through the server, p50/p99;
- concurrent: 32 map-like calls at once, aggregate completion tokens per second (the
  median of 3 runs each, interleaved);
- flood: --requests tiny requests sent at once to the server: answered, lost, its memory;
- whosaid: the bundled who-said sets through the CLI with `--model URL` (a fresh process per
  question, as a shell user runs it) beside `ask` in process and beside the CLI loading
  the model itself (the first --few questions): accuracy, median seconds;
- llamacpp (where llama-cpp-python's server is installed: the `llamacpp` extra): the same
  CLI questions through its OpenAI-compatible server on the default GGUF."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ helpers

from bench.report import log, machine  # noqa: E402
from bench.whosaid import book_parser, correct, isolated_home, parse_sets  # noqa: E402

STORY = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of "
         "having nothing to do: once or twice she had peeped into the book her sister was "
         "reading, but it had no pictures or conversations in it. ") * 3
CONCURRENT, CONCURRENT_TOKENS = 32, 48
REPEATS = 3  # concurrent runs of each way; their median rate is reported
OVERHEAD_RUNS = 100
# llama-cpp-python's server counts tokens and scores, but gives no chat template: the
# same aids as mempipe's own server come from naming the model's tokenizer.
TOKENIZER = {"llamacpp": {"MEMPIPE_TOKENIZER": "smollm2-135m-instruct"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An OpenAI-compatible server in its own process, up once its `probe` path answers
    200: `mempipe serve` by default, any other command with `command`."""

    def __init__(self, model: str | None = None, command: list[str] | None = None,
                 env: dict[str, str] | None = None, probe: str = "/health"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        # Its log goes to a file: a pipe left unread would fill and block the server.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by kill)
        self.process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "mempipe", "serve",
                           *(["--model", model] if model else [])]), "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log, text=True,
            env={**os.environ, **(env or {})})
        import httpx

        for _ in range(3000):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{probe}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the server exited: {self.log.read()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("the server did not come up")

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.log.close()


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)}


def overhead(local, remote) -> dict:
    """One 4-token completion at a time: the HTTP round trip is what differs."""
    import anyio

    from mempipe.engine import GenerationRequest, Message

    request = GenerationRequest(messages=[Message(role="user", content="Count to ten.")],
                                max_tokens=4, agent="bench")
    async def one_at_a_time(engine) -> list[float]:
        await engine.generate(request)  # warm
        seconds = []
        for _ in range(OVERHEAD_RUNS):
            started = time.perf_counter()
            await engine.generate(request)
            seconds.append(time.perf_counter() - started)
        return seconds

    result = {}
    for name, engine in (("in_process", local), ("http", remote)):
        result[name] = percentiles(anyio.run(one_at_a_time, engine))
        log(f"overhead {name}: {result[name]}")
    result["overhead_p50_ms"] = round(result["http"]["p50_ms"] - result["in_process"]["p50_ms"], 2)
    result["overhead_p99_ms"] = round(result["http"]["p99_ms"] - result["in_process"]["p99_ms"], 2)
    return result


def concurrent(local, remote) -> dict:
    """CONCURRENT map-like calls at once (a passage and an instruction each), as `map`
    sends them: aggregate completion tokens per second."""
    import anyio

    from mempipe.engine import GenerationRequest, Message

    def request(i: int) -> GenerationRequest:
        prompt = f"{STORY}\n\n---\nIn a few words, what is passage {i} about?"
        return GenerationRequest(messages=[Message(role="user", content=prompt)],
                                 max_tokens=CONCURRENT_TOKENS, agent="bench")

    async def all_at_once(engine) -> tuple[float, int]:
        done = []

        async def one(i: int) -> None:
            done.append(await engine.generate(request(i)))

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for i in range(CONCURRENT):
                tasks.start_soon(one, i)
        return time.perf_counter() - started, sum(d.completion_tokens for d in done)

    runs: dict[str, list[tuple[float, int]]] = {"in_process": [], "http": []}
    for engine in (local, remote):
        anyio.run(all_at_once, engine)  # warm: the batch's shapes
    for _ in range(REPEATS):  # interleaved, so that both meet the same machine
        for name, engine in (("in_process", local), ("http", remote)):
            runs[name].append(anyio.run(all_at_once, engine))
    result = {}
    for name, measured in runs.items():
        rates = [tokens / seconds for seconds, tokens in measured]
        result[name] = {"runs": [{"seconds": round(s, 2), "tokens": t} for s, t in measured],
                        "tokens_per_s": round(statistics.median(rates), 1)}
        log(f"concurrent {name}: {result[name]}")
    result["ratio"] = round(result["http"]["tokens_per_s"] / result["in_process"]["tokens_per_s"],
                            3)
    return result


def flood(served: Served, count: int) -> dict:
    """`count` one-token requests sent at once, each on its own connection."""
    import anyio
    import httpx

    before = served.peak_rss_mib()
    body = {"messages": [{"role": "user", "content": "Hi."}], "max_tokens": 1,
            "temperature": 0}
    statuses: list[int] = []

    async def send_all() -> float:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(limits=limits, timeout=600) as client:
            async def one() -> None:
                try:
                    response = await client.post(f"{served.url}/chat/completions", json=body)
                    ok = response.status_code == 200 and response.json()["choices"]
                    statuses.append(200 if ok else response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)

            started = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(count):
                    tasks.start_soon(one)
            return time.perf_counter() - started

    seconds = anyio.run(send_all)
    answered = statuses.count(200)
    result = {"requests": count, "answered": answered, "lost": count - answered,
              "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
              "seconds": round(seconds, 2), "server_peak_rss_mib_before": round(before, 1),
              "server_peak_rss_mib_after": round(served.peak_rss_mib(), 1)}
    log(f"flood: {result}")
    return result


def whosaid(pairs, limit: int | None, urls: dict[str, str], few: int) -> dict:
    """Each question in process (`ask` through the Python API), then through the CLI
    against each server: accuracy, median seconds per question, and how many answers are
    the same as in process."""
    from mempipe import Item, Memory, ask
    from mempipe.engine import get_engine
    from mempipe.pipes.syntax import quote

    books = {}
    for book, qa in pairs:
        text = book.read_text()
        questions = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
        questions = questions[:limit] if limit else questions
        namespace = re.sub(r"[^A-Za-z0-9_.-]", "-", book.stem)[:64]
        Memory(namespace).remember(Item(text=text, source=str(book), span=(0, len(text))))
        here, seconds = [], []
        for q in questions:
            started = time.perf_counter()
            here.append(str(ask(q["question"], from_=namespace, tier="text").pipeline()
                            .run(engine=get_engine())).strip())
            seconds.append(time.perf_counter() - started)
        ways = {"in_process": summary(questions, here, seconds, here)}
        log(f"{book.name} in process: {ways['in_process']}")
        for name, url in urls.items():
            asked = questions if name == "cli_mempipe_serve" else questions[:few]
            answers, seconds = [], []
            for q in asked:
                started = time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-m", "mempipe", *(["--model", url] if url else []),
                     f"ask {quote(q['question'])} --from {namespace} --tier text"],
                    capture_output=True, text=True, cwd=ROOT, timeout=600,
                    env={**os.environ, **TOKENIZER.get(name, {})})
                seconds.append(time.perf_counter() - started)
                answers.append(run.stdout.strip() if run.returncode == 0 else
                               f"(failed: {run.stderr.strip()})")
                log(f"{book.name} {name}: {answers[-1]!r} ({q['answer']})")
            ways[name] = summary(asked, answers, seconds, here)
            log(f"{book.name} {name}: {ways[name]}")
        books[book.stem] = ways
    return books


def summary(questions: list[dict], answers: list[str], seconds: list[float],
            in_process: list[str]) -> dict:
    right = [correct(a, q["answer"]) for a, q in zip(answers, questions)]
    return {"questions": len(questions), "accuracy": round(sum(right) / len(right), 3),
            "median_s": round(statistics.median(seconds), 3),
            "same_as_in_process": sum(a == b for a, b in zip(answers, in_process))}


def main() -> None:
    parser = book_parser(__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="the flood's size")
    parser.add_argument("--few", type=int, default=20,
                        help="questions per book through llama.cpp's server, and through "
                        "the CLI without a server")
    args, pairs = parse_sets(parser)
    os.environ["MEMPIPE_HOME"] = isolated_home()

    from mempipe.engine.http import HTTPEngine
    from mempipe.engine.local import LocalEngine

    log("starting mempipe serve")
    served = Served()
    others: dict[str, Served] = {}
    try:
        local, remote = LocalEngine("smollm2-135m-instruct"), HTTPEngine(served.url)
        result: dict = {"benchmark": "serve", "machine": machine(),
                        "model": "smollm2-135m-instruct (default)",
                        "overhead": overhead(local, remote),
                        "concurrent": concurrent(local, remote),
                        "flood": flood(served, args.requests)}
        # The baseline: the same CLI loading the model itself, as before servers.
        urls = {"cli_mempipe_serve": served.url, "cli_in_process": ""}
        if find_spec("llama_cpp") is not None:
            from mempipe.engine.models import default_gguf

            log("starting llama-cpp-python's server")
            others["llamacpp"] = Served(command=[
                sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf()),
                "--n_ctx", "8192", "--logits_all", "true"], probe="/v1/models")
            urls["llamacpp"] = others["llamacpp"].url
        result["whosaid"] = whosaid(pairs, args.limit, urls, args.few)
        result["llamacpp"] = "llamacpp" in others
    finally:
        served.kill()
        for other in others.values():
            other.kill()
    print(json.dumps(result, indent=2 if args.json else None))


if __name__ == "__main__":
    main()
