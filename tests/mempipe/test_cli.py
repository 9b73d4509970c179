"""The CLI as a shell user meets it: a subprocess, its exit code, stdout vs stderr."""

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ALICE, ROOT, mempipe


def one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("mempipe: ") and text in result.stderr


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["sumarize x"], None, "unknown agent 'sumarize'; did you mean 'summarize'? (at character 1)"),
    (["read x | ask 'unclosed"], None, "unbalanced single quote (at character 14)"),
    (["read x || chunk"], None, "empty stage before '|' (at character 9)"),
    (["read x |"], None, "empty stage after the last '|'"),
    (["read x | chunk --size 3"], None, "stage 2 (chunk): unknown option --size"),
    (["summarize no/such/file.txt"], None, "stage 1 (read): no such file: no/such/file.txt"),
    (["chunk"], "", "stage 1 (read): empty input"),
    (["map x", "--model", "/nonexistent/model"], "text", "unknown model: /nonexistent/model"),
    ([""], None, "no pipeline given"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], stdin: str | None,
                                          message: str) -> None:
    one_line_error(mempipe(*args, input=stdin), 2, message)


def test_binary_file_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    one_line_error(mempipe(f"summarize {tmp_path / 'blob.bin'}"), 2,
                   f"binary file: {tmp_path / 'blob.bin'}")
    one_line_error(mempipe(f"summarize {tmp_path}"), 2, f"no text files in directory {tmp_path}")


def test_a_model_path_that_is_not_a_model(tmp_path: Path) -> None:
    one_line_error(mempipe("map 'x'", "--model", str(tmp_path), input="some text"), 2,
                   f"not a model: {tmp_path}")


def test_agents_and_version() -> None:
    listed = mempipe("agents")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == ["ask", "chunk", "commit-msg", "focus", "map", "read", "recall", "remember",
                     "staged-diff", "summarize"]
    assert "--tokens=800" in listed.stdout
    as_json = [json.loads(line) for line in mempipe("agents", "--json").stdout.splitlines()]
    assert {"name": "ask", "kind": "reduce"}.items() <= as_json[0].items()
    assert mempipe("--version").stdout.strip() == "mempipe, version 0.1.0"


@pytest.mark.slow
def test_stdin_pipeline_json_trace_and_logs(tiny_model: Path) -> None:
    text = ALICE.read_text()[:6000]
    result = mempipe("--model", str(tiny_model), "--json", "--trace", "chunk --tokens 300",
                     input=text)
    assert result.returncode == 0, result.stderr
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(items) > 3 and all(i["source"] == "-" for i in items)
    assert all(text[i["span"][0]:i["span"][1]] == i["text"] for i in items)
    assert "stage 2 chunk: 1 in" in result.stderr and "stage 1 read" in result.stderr
    logged = json.loads(mempipe("logs", "-n", "1", "--json").stdout)
    assert logged["pipeline"] == "chunk --tokens 300" and logged["status"] == "ok"
    assert [s["name"] for s in logged["stages"]] == ["read", "chunk"]


@pytest.mark.slow
def test_logs_keep_what_each_stage_chose(tiny_model: Path) -> None:
    result = mempipe("--model", str(tiny_model), "ask 'Who met the Hatter?' --max-tokens 4",
                     input="Alice met the Hatter at tea.")
    assert result.returncode == 0, result.stderr
    logged = json.loads(mempipe("logs", "-n", "1", "--json").stdout)
    assert logged["stages"][-1]["notes"] == "answered from text"
    assert "ask: 1 in, 1 out" in mempipe("logs", "-n", "1").stdout
    assert "; answered from text" in mempipe("logs", "-n", "1").stdout


@pytest.mark.slow
def test_words_pipeline_file_and_model_env(tiny_model: Path, tmp_path: Path) -> None:
    script = tmp_path / "shorten.mp"
    script.write_text(f"# a pipeline file\nread {ALICE}\n| chunk --tokens 2000\n"
                      "| map 'Shorten this.' --max-tokens 5\n")
    env = {"MEMPIPE_MODEL": str(tiny_model)}
    from_file = mempipe("-f", str(script), env=env)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stderr == ""
    assert len(from_file.stdout.split("\n\n")) > 10
    as_words = mempipe("map", "Shorten this.", "--max-tokens=5", input="A short text.", env=env)
    assert as_words.returncode == 0, as_words.stderr
    logged = json.loads(mempipe("logs", "-n", "1", "--json").stdout)
    assert logged["pipeline"] == "map 'Shorten this.' --max-tokens=5"


@pytest.mark.slow
def test_failure_while_running_names_the_stage(tiny_model: Path) -> None:
    one_line_error(mempipe("--model", str(tiny_model), "map x --budget 64",
                           input="word " * 100), 1, "stage 2 (map): ")


@pytest.mark.slow
@pytest.mark.parametrize("after", [1, 6], ids=["while starting", "while generating"])
def test_ctrl_c_exits_130_without_traceback(tiny_model: Path, after: float) -> None:
    """At any moment: starting up, the run imports torch and loads the model inside the
    event loop, where a cancelled task would not notice until it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mempipe", "--model", str(tiny_model),
         "map 'Go on and on.' --max-tokens 2000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT)
    assert proc.stdin is not None
    proc.stdin.write("word " * 1000)
    proc.stdin.close()
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert proc.stderr is not None and proc.stderr.read().strip() == "mempipe: interrupted"


def test_the_command_takes_ctrl_c_before_its_heavy_imports() -> None:
    """The entry point sets its handler first; the package it imports loads nothing heavy
    (a Ctrl-C while pydantic or numpy loaded printed a traceback)."""
    probe = ("import sys, mempipe.__main__; "
             "print(sorted({'pydantic', 'numpy', 'sqlite_utils', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stderr
    from mempipe import Item, ask  # what the package offers is still there, when used

    assert ask("Why?").question == "Why?" and Item(text="x").text == "x"


def test_output_to_a_closed_pipe_is_quiet() -> None:
    shell = (f"{sys.executable} -m mempipe 'read {ALICE} {ALICE} {ALICE}' | head -c 10")
    result = subprocess.run(shell, shell=True, capture_output=True, text=True, cwd=ROOT)
    assert result.stdout == ALICE.read_text()[:10]
    assert result.stderr == ""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_at_a_terminal_progress_stays_on_stderr(tiny_model: Path, tmp_path: Path) -> None:
    """With stderr a terminal the progress display runs; stdout must still get plain text."""
    source, out = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("Alice saw a [bold]Rabbit[/bold] call time(). " * 40)
    command = (f"{shlex.quote(sys.executable)} -m mempipe --model {shlex.quote(str(tiny_model))}"
               f" 'chunk --tokens 50' < {source} > {out}")
    subprocess.run(["script", "-qec", command, "/dev/null"], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    text = out.read_text()
    assert "\x1b[" not in text and "[bold]Rabbit[/bold] call time()." in text
