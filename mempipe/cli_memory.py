"""`mempipe memory ...`: look into the memory store and move namespaces in and out.
Each command is one call on `mempipe.memory.Store`. Each imports what it needs when it
runs (as cli.py's commands do): the command starts at once and loads numpy, SQLite and
torch only where it uses them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

COUNT = click.IntRange(min=1)  # questions, epochs, steps, rank: at least one


def _store():
    from mempipe.memory import Store

    return Store()


def _show(passage, as_json: bool) -> None:
    if as_json:
        click.echo(passage.model_dump_json())
        return
    text = " ".join(passage.text.split())
    text = text if len(text) <= 100 else text[:99] + "…"
    click.echo(f"#{passage.id} {passage.source}:{passage.span[0]}-{passage.span[1]}  {text}")


@click.group()
def memory() -> None:
    """The memory store: namespaces of remembered passages."""


@memory.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per namespace.")
def list_(as_json: bool) -> None:
    """Every namespace with its documents and passages."""
    for row in _store().stats():
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(f"{row['namespace']:<24} {row['documents']} documents, "
                       f"{row['passages']} passages, {row['chars']} chars")


@memory.command()
@click.argument("namespace")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per passage.")
def show(namespace: str, as_json: bool) -> None:
    """The passages of NAMESPACE in the order they were remembered."""
    store = _store()
    for passage in store.passages(store.existing(namespace)[0]):
        _show(passage, as_json)


@memory.command()
@click.argument("namespace")
@click.argument("query")
@click.option("-k", default=5, show_default=True, help="How many passages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per passage.")
def search(namespace: str, query: str, k: int, as_json: bool) -> None:
    """The K passages of NAMESPACE that best answer QUERY, best first."""
    store = _store()
    for passage in store.search(store.existing(namespace), query, k):
        _show(passage, as_json)


@memory.command()
@click.argument("namespace", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per namespace.")
def stats(namespace: str | None, as_json: bool) -> None:
    """Per namespace and tier: passages, characters and recalls (text); memories, their
    bytes and settings, and how the memory reader was measured reading them (kv);
    adapters, their bytes, facts and last training (params)."""
    from mempipe.memory import Memory, params, reader

    store = _store()
    for row in store.stats(namespace):
        row |= reader.describe(Memory(row["namespace"], store))
        row |= params.describe(Memory(row["namespace"], store))
        click.echo(json.dumps(row) if as_json else
                   "  ".join(f"{key}={value}" for key, value in row.items()))


@memory.command()
@click.argument("namespace")
def forget(namespace: str) -> None:
    """Delete NAMESPACE and everything in it."""
    count = _store().forget(namespace)
    click.echo(f"forgot {namespace}: {count} passages", err=True)


@memory.command()
@click.argument("namespace")
def export(namespace: str) -> None:
    """NAMESPACE as JSON lines on stdout (`import` reads them back)."""
    for line in _store().export(namespace):
        click.echo(line)


@memory.command("import")
@click.argument("namespace")
@click.argument("file", type=click.File("r"), default="-")
def import_(namespace: str, file) -> None:
    """Passages exported as JSON lines (FILE or stdin) into NAMESPACE, all or nothing."""
    if file is sys.stdin and sys.stdin.isatty():
        click.echo("mempipe: reading JSON lines from stdin (end with Ctrl-D)", err=True)
    count = _store().import_(namespace, file)
    click.echo(f"imported {count} passages into {namespace}", err=True)


def _say_measured(found: dict, asked: str, label: str, tier: str, auto: str) -> None:
    """How a trained tier answered `asked` beside text, and so what ask --tier auto does."""
    click.echo(f"measured on {found['n']} {asked}: {label} {found[tier]:.1%}, text "
               f"{found['text']:.1%}, so ask --tier auto {auto}", err=True)


@memory.command("train-reader")
@click.argument("namespace")
@click.option("--questions", default=300, type=COUNT, show_default=True,
              help="Questions asked of the namespace's passages to learn from.")
@click.option("--epochs", default=2, type=COUNT, show_default=True, help="Passes over them.")
@click.option("--rank", default=16, type=COUNT, show_default=True, help="The adapter's LoRA rank.")
@click.option("--measure", default=300, type=click.IntRange(min=0), show_default=True,
              help="Held-back questions the reader is then measured on, against text "
              "(0: not measured; ask --tier auto reads memories only where it was).")
def train_reader(namespace: str, questions: int, epochs: int, rank: int, measure: int) -> None:
    """Teach the model to read key/value memories (--tier kv) as well as text, learning
    from NAMESPACE's passages; once trained, every namespace's memories are read with it.
    It is then measured on NAMESPACE's held-back questions, memories against text."""
    from mempipe.agents.ask import teacher
    from mempipe.engine import get_engine
    from mempipe.memory import Memory, reader, taught

    engine = get_engine()
    _train("the memory reader", reader.train, namespace, questions, epochs, rank,
           engine=engine, teacher=teacher(namespace, engine),
           student=teacher(namespace, engine, "kv"), measured=measure)
    memory, adapter = Memory(namespace, _store()), reader.load(engine)
    if found := taught.measurement(adapter.about, memory):
        verdict = "reads" if reader.reads_well(adapter, memory) else "does not read"
        _say_measured(found, f"held-back questions about {namespace}", "memories", "kv",
                      f"{verdict} its memories")
    else:
        click.echo(f"not measured ({namespace} states no fact outside the passages it "
                   "learned from, or --measure 0), so ask --tier auto does not read its "
                   "memories", err=True)


@memory.command("train")
@click.argument("namespace")
@click.option("--questions", default=300, type=COUNT, show_default=True,
              help="Facts asked of the namespace, its most read passages' first (each "
              "learned in a few wordings); then who each speaker found is.")
@click.option("--epochs", default=3, type=COUNT, show_default=True, help="Passes over them.")
@click.option("--steps", type=COUNT, help="Stop after this many steps (one fact each).")
@click.option("--rank", default=16, type=COUNT, show_default=True, help="The adapter's LoRA rank.")
def train(namespace: str, questions: int, epochs: int, steps: int | None, rank: int) -> None:
    """Train an adapter on what NAMESPACE holds, so that ask --tier params answers from it
    with nothing recalled. Killed, it goes on from its last checkpoint when run again. It
    is then measured on the facts it learned, asked in other words, against text."""
    from mempipe.agents.ask import teacher
    from mempipe.engine import get_engine
    from mempipe.memory import Memory, params, taught

    engine = get_engine()
    _train(f"{namespace}'s adapter", params.train, namespace, questions, epochs, rank,
           engine=engine, teacher=teacher(namespace, engine),
           student=teacher(namespace, engine, "params"), steps=steps)
    memory = Memory(namespace, _store())
    adapter = params.load(memory, engine)[0]
    if found := taught.measurement(adapter.about, memory):
        verdict = "asks it" if params.by_meaning(adapter, memory) else "does not ask it"
        _say_measured(found, "facts it learned, in other words", "adapter", "params",
                      f"{verdict} questions like those it was taught")
    else:
        click.echo(f"not measured ({namespace} states no fact it learned), so ask --tier "
                   "auto asks it only questions as it was taught them", err=True)


@memory.command()
@click.argument("namespace")
@click.option("--kv-budget", default="64M", show_default=True,
              help="Bytes of key/value memories the namespace may hold (K, M, G suffixes).")
@click.option("--kv", "setting", help="Compression of new memories (default: --tier kv's).")
@click.option("--questions", default=300, type=COUNT, show_default=True,
              help="Facts the adapter learns, when it is trained (as memory train).")
@click.option("--epochs", default=3, type=COUNT, show_default=True, help="Passes over them.")
@click.option("--steps", type=COUNT, help="Stop training after this many steps.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The plan as one JSON object.")
def place(namespace: str, kv_budget: str, setting: str | None, questions: int, epochs: int,
          steps: int | None, dry_run: bool, as_json: bool) -> None:
    """Move NAMESPACE's passages between tiers by how often they are recalled: the most
    read get key/value memories within --kv-budget, memories over it are dropped (coldest
    first), and the adapter is trained again when a recalled passage is not in it."""
    import dataclasses

    from mempipe.agents.ask import teacher
    from mempipe.engine import get_engine
    from mempipe.memory import Memory, kv, placement
    from mempipe.progress import Progress

    budget = _size(kv_budget)
    store = _store()
    store.existing(namespace)
    memory, engine = Memory(namespace, store), kv.engine_for_kv(get_engine())
    chosen = placement.plan(memory, engine, budget,
                            kv.Compression.parse(setting) if setting else kv.DEFAULT)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(chosen)))
    else:
        for line in chosen.lines():
            click.echo(line)
    if not dry_run:
        with Progress(enabled=sys.stderr.isatty()) as progress:
            placement.apply(memory, engine, chosen, teacher(namespace, engine),
                            _reporter(progress, "place"), count=questions, epochs=epochs,
                            steps=steps, student=teacher(namespace, engine, "params"))


def _size(text: str) -> int:
    """Bytes written like 64M, 1.5G, 4096."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    number, unit = (text[:-1], units[text[-1].upper()]) if text[-1:].upper() in units \
        else (text, 1)
    try:
        size = int(float(number) * unit)
    except ValueError:
        size = -1
    if size < 0:
        raise click.BadParameter(f"{text!r} is not a size (like 64M, 1G, 4096)")
    return size


def _reporter(progress: Any, what: str) -> Callable[[str, int, int], None]:
    """A `(stage, done, total)` callback showing each stage as its own progress bar."""
    bars = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = progress.counted(f"{what}: {stage}")
        bars[stage](done, total)

    return report


def _train(what: str, train: Callable[..., Any], namespace: str, questions: int, epochs: int,
           rank: int, **options: Any) -> None:
    """Run one of the trainings, its stages as progress bars, and say what it learned."""
    from mempipe.memory import Memory
    from mempipe.progress import Progress

    store = _store()
    store.existing(namespace)
    with Progress(enabled=sys.stderr.isatty()) as progress:
        path, losses = train(Memory(namespace, store), count=questions, epochs=epochs,
                             rank=rank, progress=_reporter(progress, what), **options)
    trend = " -> ".join(f"{loss:.3f}" for loss in losses)
    click.echo(f"trained {what} on {namespace} (loss by epoch {trend}): {path}", err=True)
