"""Agents by name: the `mempipe.agents` entry-point group (built-ins and plugins alike)
plus agents registered in this process with `@agent` or `register`."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from mempipe.errors import UsageError
from mempipe.pipes.run import KINDS

GROUP = "mempipe.agents"
_local: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Make `cls` usable by its name in pipelines run by this process."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _local[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)} | set(_local))


def get(name: str) -> type[Any]:
    """The agent class called `name`; an unknown name is an error naming the closest one."""
    if name in _local:
        return _local[name]
    for ep in entry_points(group=GROUP, name=name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)
                and getattr(cls, "kind", None) in KINDS):
            raise UsageError(f"entry point {name} = {ep.value} is not an Agent class")
        return cls
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; `mempipe agents` lists them"
    raise UsageError(f"unknown agent {name!r}{hint}")


def all_agents() -> list[type[Any]]:
    return [get(name) for name in names()]
