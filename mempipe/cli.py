"""The `mempipe` command: a thin layer over the Python API.

    mempipe "summarize book.txt | ask 'who said X'"
    cat x | mempipe "chunk --tokens 800 | summarize"
    mempipe agents | models | logs | memory | serve ...

All errors end here, as one line on stderr and an exit code: 2 for bad input, 1 for a
failure while running, 130 for Ctrl-C. Each command imports what it needs when it runs, so
the command takes Ctrl-C and answers `--help` before pydantic, numpy, SQLite or torch
load."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

import anyio
import click
from click_default_group import DefaultGroup

from mempipe import __version__, ctrl_c
from mempipe.cli_memory import memory
from mempipe.errors import MempipeError, UsageError, exit_with


@click.group(cls=DefaultGroup, default="run", default_if_no_args=True)
@click.version_option(__version__, prog_name="mempipe")
def cli() -> None:
    """Compose small local language-model agents with pipes.

    mempipe "summarize book.txt | ask 'Who is the story about?'"
    """


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@click.option("-f", "--file", "script", type=click.File("r"), help="Run the pipeline in FILE.")
@click.option("--model", help="Model directory or hub id, or a server's URL "
              "(http://HOST:PORT/v1[#NAME]; several, comma-separated, are replicas); default: "
              "MEMPIPE_MODEL, else the bundled SmolLM2-135M-Instruct.")
@click.option("--json", "as_json", is_flag=True, help="Output items as JSON lines.")
@click.option("--trace", is_flag=True, help="Per-stage items, tokens and seconds on stderr.")
def run(words: tuple[str, ...], script: click.utils.LazyFile | None, model: str | None,
        as_json: bool, trace: bool) -> None:
    """Run a pipeline: STAGE ['|' STAGE]... (quote it, or give it in words)."""
    from mempipe.config import model_name
    from mempipe.pipes.build import parse
    from mempipe.pipes.trace import Trace
    from mempipe.progress import Progress

    if script is not None and words:
        raise UsageError("give a pipeline or --file, not both")
    if model:  # what the whole run uses: a server's URL also serves its embedder
        os.environ["MEMPIPE_MODEL"] = model
    text = script.read() if script is not None else _pipeline_text(words)
    if not text.strip():
        raise UsageError('no pipeline given; try: mempipe "summarize FILE" (mempipe --help)')
    pipeline = parse(text)
    stats = Trace()
    outputs: list[str] = []
    started = time.perf_counter()
    status, error = "ok", None

    async def main() -> None:
        with Progress(enabled=sys.stderr.isatty()) as progress:
            async for item in pipeline.stream(model=model, trace=stats, progress=progress):
                # Items are separated by a blank line, JSON lines by a newline.
                separator = "" if not outputs else "\n" if as_json else "\n\n"
                line = item.model_dump_json() if as_json else item.text.rstrip("\n")
                sys.stdout.write(separator + line)
                sys.stdout.flush()
                outputs.append(item.text)
        if outputs:
            sys.stdout.write("\n")
            sys.stdout.flush()

    try:
        anyio.run(main)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        error = str(exc) or type(exc).__name__
        raise
    finally:
        if trace:
            for stage in stats.stages:
                click.echo(stage.line(), err=True)
        _log(text.strip(), model_name(model), stats, status, error,
             time.perf_counter() - started, "\n\n".join(outputs))


def _pipeline_text(words: tuple[str, ...]) -> str:
    """One word is the pipeline as written; several are re-quoted, bare `|` kept."""
    if len(words) == 1:
        return words[0]
    return " ".join(w if w == "|" else shlex.quote(w) for w in words)


def _log(pipeline: str, model: str, trace: object, status: str, error: str | None,
         seconds: float, output: str) -> None:
    from mempipe import logs

    try:
        logs.record(pipeline, model, trace, status, error, seconds, output)  # type: ignore[arg-type]
    except Exception as exc:  # a full disk must not turn a good run into a failed one
        click.echo(f"mempipe: warning: could not log this run: {exc}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per agent.")
def agents(as_json: bool) -> None:
    """Every agent, one line each, with its options."""
    from mempipe.pipes.registry import all_agents

    for cls in all_agents():
        options = {name: (None if field.is_required() else field.get_default(
            call_default_factory=True)) for name, field in cls.model_fields.items()}
        about = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        if as_json:
            click.echo(json.dumps({"name": cls.name, "kind": cls.kind, "about": about,
                                   "arguments": list(cls.positional), "options": options}))
            continue
        args = " ".join(f"<{p}>" for p in cls.positional)
        flags = " ".join(f"--{n.rstrip('_').replace('_', '-')}={v}" for n, v in options.items()
                         if n not in cls.positional)
        click.echo(f"{cls.name:<12} {cls.kind:<7} {about}  {args} {flags}".rstrip())


@cli.group(cls=DefaultGroup, default="list", default_if_no_args=True)
def models() -> None:
    """The models mempipe runs: `list` them (the default), or `install` the default ones."""


@models.command("install")
def models_install() -> None:
    """Install the default model and the memory embedder (two packages, from the package
    index, without their dependencies); the model is converted on its first run."""
    from mempipe.engine.models import PACKAGES, install_packages

    install_packages()
    click.echo(f"installed {' and '.join(PACKAGES)}", err=True)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
def models_list(as_json: bool) -> None:
    """Models available without a download: which is the default, where each lives."""
    from mempipe.config import home
    from mempipe.engine.models import installed

    for info in installed():
        if as_json:
            click.echo(info.model_dump_json())
        else:
            mark = "*" if info.default else " "
            click.echo(f"{mark} {info.name:<24} {info.status:<36} {info.path or ''}".rstrip())
    if not as_json:
        click.echo(f"(* the model runs use; home: {home()})", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs --api-key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model", help="The model to serve (default: MEMPIPE_MODEL, else the bundled "
              "SmolLM2-135M-Instruct).")
@click.option("--api-key", envvar="MEMPIPE_API_KEY", help="Key every request must send "
              "(Authorization: Bearer KEY); default MEMPIPE_API_KEY.")
@click.option("--max-concurrent", default=64, show_default=True, type=click.IntRange(1),
              help="Requests the engine holds at once; more wait, and past 4096 waiting "
              "get 429.")
@click.option("--max-tokens", default=4096, show_default=True, type=click.IntRange(1),
              help="The most tokens one request may ask to generate.")
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
def serve(host: str, port: int, model: str | None, api_key: str | None,
          max_concurrent: int, max_tokens: int, verbose: bool) -> None:
    """Serve the model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions,
    /v1/embeddings, /v1/models, /tokenize, /health) until SIGTERM or Ctrl-C."""
    from mempipe import serve as serving
    from mempipe.config import is_url, model_name

    name = model_name(model)
    if is_url(name):
        raise UsageError(f"serve runs a model in this process, not {name}: give --model")
    limits = serving.Limits(max_tokens=max_tokens, concurrent=max_concurrent)
    serving.serve(name, host, port, api_key, limits, "info" if verbose else "warning")


@cli.command()
@click.option("-n", "--count", default=5, show_default=True, help="How many recent runs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.option("--path", "show_path", is_flag=True, help="Print the log database's path.")
def logs(count: int, as_json: bool, show_path: bool) -> None:
    """Recent runs: pipeline, status, time, and per-stage tokens."""
    from mempipe import logs as log_db

    if show_path:
        click.echo(str(log_db.path()))
        return
    for run in log_db.recent(count):
        if as_json:
            click.echo(json.dumps(run))
            continue
        click.echo(f"#{run['id']} {run['started']} {run['status']} {run['seconds']:.1f}s "
                   f"[{run['model']}] {run['pipeline']}")
        if run["error"]:
            click.echo(f"    error: {run['error']}")
        for s in run["stages"]:
            click.echo(f"    {s['name']}: {s['items_in']} in, {s['items_out']} out, "
                       f"{s['calls']} calls, {s['tokens_in']}+{s['tokens_out']} tokens, "
                       f"{s['seconds']:.1f}s" + (f"; {s['notes']}" if s["notes"] else ""))


@cli.group()
def hook() -> None:
    """The git prepare-commit-msg hook that drafts commit messages."""


@hook.command("install")
@click.option("--force", is_flag=True, help="Keep an existing hook and run it first.")
def hook_install(force: bool) -> None:
    """Install the hook in the current repository."""
    from mempipe import hook as hooks

    click.echo(f"installed {hooks.install(force=force)}", err=True)


@hook.command("uninstall")
def hook_uninstall() -> None:
    """Remove the hook (and restore the one it chained to)."""
    from mempipe import hook as hooks

    click.echo(f"removed {hooks.uninstall()}", err=True)


@hook.command("run", hidden=True)
@click.argument("message_file")
@click.argument("source", required=False)
@click.argument("sha", required=False)
@click.option("--timeout", type=float, help="Seconds before giving up (MEMPIPE_HOOK_TIMEOUT, "
              "default 120).")
def hook_run(message_file: str, source: str | None, sha: str | None,
             timeout: float | None) -> None:
    """What git runs: draft the message; never fail the commit."""
    from mempipe import hook as hooks

    try:
        why = hooks.run(message_file, source, timeout)
    except Exception as exc:  # the commit goes on whatever happened here
        why = str(exc) or type(exc).__name__
    if why:
        click.echo(f"mempipe: no message drafted: {why}", err=True)


cli.add_command(memory)


def main() -> None:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        ctrl_c.exit_now()
    except click.ClickException as exc:
        exit_with(exc.format_message(), exc.exit_code)
    except MempipeError as exc:
        exit_with(str(exc), exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`| head`): exit quietly, as unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:
        if os.environ.get("MEMPIPE_DEBUG"):
            raise
        exit_with(f"internal error: {type(exc).__name__}: {exc} (MEMPIPE_DEBUG=1 shows where)", 1)


if __name__ == "__main__":
    main()
