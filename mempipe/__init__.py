"""mempipe: small local language-model agents composed with `|`.

    from mempipe import read, summarize, ask
    answer = (read("book.txt") | summarize() | ask("Who is the story about?")).run()

Each function returns an agent; `|` joins agents into a Pipeline; `pipe(text)` parses the
same pipeline from the DSL the CLI takes."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mempipe.agents.ask import Ask
    from mempipe.agents.chunk import Chunk
    from mempipe.agents.focus import Focus
    from mempipe.agents.function import agent
    from mempipe.agents.map import Map
    from mempipe.agents.read import Read
    from mempipe.agents.recall import Recall
    from mempipe.agents.remember import Remember
    from mempipe.agents.summarize import Summarize
    from mempipe.errors import MempipeError
    from mempipe.item import Item
    from mempipe.memory import Memory, Passage
    from mempipe.pipes.build import parse as pipe
    from mempipe.pipes.pipeline import Agent, MapAgent, Pipeline, ReduceAgent, SourceAgent

__version__ = "0.1.0"

__all__ = [
    "Agent", "Item", "MapAgent", "Memory", "MempipeError", "Passage", "Pipeline", "ReduceAgent",
    "SourceAgent", "agent", "ask", "chunk", "focus", "map", "pipe", "read", "recall",
    "remember", "summarize",
]

# Imported when first used: `import mempipe` stays light, so the command can take Ctrl-C
# from its first moment (mempipe/__main__.py) before pydantic, SQLite and numpy load.
_LAZY = {"Agent": "mempipe.pipes.pipeline", "MapAgent": "mempipe.pipes.pipeline",
         "ReduceAgent": "mempipe.pipes.pipeline", "SourceAgent": "mempipe.pipes.pipeline",
         "agent": "mempipe.agents.function", "MempipeError": "mempipe.errors",
         "Memory": "mempipe.memory", "Passage": "mempipe.memory",
         "pipe": "mempipe.pipes.build", "Item": "mempipe.item",
         "Pipeline": "mempipe.pipes.pipeline"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mempipe' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), "parse" if name == "pipe" else name)
    globals()[name] = value
    return value


def read(*paths: str) -> Read:
    """Files, globs or directories as items, one per file; no paths (or "-") reads stdin."""
    from mempipe.agents.read import Read

    return Read(paths=list(paths) or ["-"])


def chunk(tokens: int = 800, overlap: int = 0, **options: Any) -> Chunk:
    """Each item cut into sentence-respecting pieces of at most `tokens` tokens."""
    from mempipe.agents.chunk import Chunk

    return Chunk(tokens=tokens, overlap=overlap, **options)


def summarize(words: int = 150, **options: Any) -> Summarize:
    """One summary of everything piped in, at most `words` words."""
    from mempipe.agents.summarize import Summarize

    return Summarize(words=words, **options)


def ask(question: str, **options: Any) -> Ask:
    """The answer to `question`, from memory (`from_="books"`) or from what is piped in."""
    from mempipe.agents.ask import Ask

    return Ask(question=question, **options)


def recall(query: str, from_: str = "default", k: int = 5, **options: Any) -> Recall:
    """The `k` passages of namespace `from_` that best answer `query`."""
    from mempipe.agents.recall import Recall

    return Recall(query=query, from_=from_, k=k, **options)


def remember(into: str = "default", **options: Any) -> Remember:
    """Each item kept in namespace `into` (indexed once per content), passed on unchanged."""
    from mempipe.agents.remember import Remember

    return Remember(into=into, **options)


def focus(question: str, chars: int = 150, **options: Any) -> Focus:
    """Each item narrowed to the sentences that bear most on `question`."""
    from mempipe.agents.focus import Focus

    return Focus(question=question, chars=chars, **options)


def map(instruction: str, **options: Any) -> Map:
    """`instruction` applied to each item."""
    from mempipe.agents.map import Map

    return Map(instruction=instruction, **options)
