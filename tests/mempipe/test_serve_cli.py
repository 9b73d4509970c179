"""`mempipe serve` processes and a CLI pointed at them, as a shell user runs them: one
replica killed mid-run, a server killed under a single-server run, a wrong URL, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.serve import Served, free_port
from tests.conftest import ROOT, mempipe
from tests.mempipe.test_cli import one_line_error

pytestmark = pytest.mark.slow
ITEMS = 64
PIPELINE = "chunk --tokens 20 | map 'Say it again.' --max-tokens 24"


@pytest.fixture
def servers(tiny_model: Path) -> Iterator[list[Served]]:
    started = [Served(str(tiny_model), env={"MEMPIPE_DTYPE": "float32"}) for _ in range(2)]
    yield started
    for served in started:
        served.kill()


def lines(count: int) -> str:
    return "".join(f"Item number {i} is about the Queen of Hearts.\n\n" for i in range(count))


def run_killing(model: str, kill: Served) -> subprocess.CompletedProcess:
    """A map over ITEMS items through `model`; `kill` dies once the run is under way."""
    run = subprocess.Popen([sys.executable, "-m", "mempipe", "--model", model, "--json",
                            PIPELINE],
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdin is not None
    run.stdin.write(lines(ITEMS))
    run.stdin.close()
    run.stdin = None  # written: communicate() has nothing more to send
    assert run.stdout is not None
    first = run.stdout.readline()  # the run is under way, most items still to come
    kill.kill()
    out = run.stdout.read()  # through the same buffer that read the first line
    err = run.stderr.read() if run.stderr else ""
    return subprocess.CompletedProcess(run.args, run.wait(timeout=300), first + out, err)


def test_a_replica_killed_mid_run_loses_nothing(servers: list[Served]) -> None:
    alone = mempipe("--model", servers[1].url, "--json", PIPELINE, input=lines(ITEMS))
    expected = [line for line in alone.stdout.splitlines() if line]
    assert len(expected) > ITEMS // 2, alone.stderr
    done = run_killing(",".join(s.url for s in servers), servers[0])
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line] == expected  # none lost or twice
    assert f"replica {servers[0].url} stopped answering" in done.stderr


def test_a_server_killed_mid_run_is_one_line_and_exit_1(servers: list[Served]) -> None:
    done = run_killing(servers[0].url, servers[0])
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{servers[0].url} stopped answering" in done.stderr
    assert "in flight" in done.stderr


def test_a_wrong_url_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    one_line_error(mempipe("--model", url, "map 'x'", input="text"), 2, f"cannot reach {url}")


def test_sigterm_finishes_the_requests_in_flight(servers: list[Served]) -> None:
    served = servers[0]
    body = {"messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 400, "temperature": 0}
    replies: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: replies.append(
        httpx.post(f"{served.url}/chat/completions", json=body, timeout=120)))
    asking.start()
    time.sleep(1.0)  # the request is being decoded
    served.process.send_signal(signal.SIGTERM)
    asking.join(timeout=120)
    assert replies and replies[0].status_code == 200
    assert replies[0].json()["usage"]["completion_tokens"] > 0
    # Then it exits as SIGTERM's default would (uvicorn raises the signal again once done).
    assert served.process.wait(timeout=60) in (0, -signal.SIGTERM)


def test_a_failed_remember_through_a_server_changes_no_memory(tiny_model: Path) -> None:
    stored = mempipe("--model", str(tiny_model), "read - | remember --into kept",
                     input="Alice met the Queen of Hearts in the garden.")
    assert stored.returncode == 0, stored.stderr
    before = mempipe("memory", "list").stdout
    url = f"http://127.0.0.1:{free_port()}/v1"
    failed = mempipe("--model", url, "read - | remember --into kept",
                     input="The Hatter poured tea for the March Hare.")
    one_line_error(failed, 2, f"cannot reach {url}")
    assert mempipe("memory", "list").stdout == before
