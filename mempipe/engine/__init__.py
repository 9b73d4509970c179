"""The model runtime every agent shares: one engine per model per process."""

from __future__ import annotations

from mempipe.config import is_url, model_name
from mempipe.engine.base import Engine, Generation, GenerationRequest, Message
from mempipe.engine.local import LocalEngine

__all__ = ["Engine", "Generation", "GenerationRequest", "Message", "get_engine"]

_engines: dict[str, Engine] = {}


def get_engine(model: str | None = None) -> Engine:
    """The process-wide engine for `model` (default: MEMPIPE_MODEL, else the bundled model).

    Created on first use and loaded lazily, so that concurrent agents share one model and
    their requests batch together."""
    name = model_name(model)
    if name not in _engines:
        _engines[name] = _engine(name)
    return _engines[name]


def _engine(name: str) -> Engine:
    """A URL is a server (several, comma-separated, are replicas); anything else is a
    model this process loads."""
    if not is_url(name):
        return LocalEngine(name)
    from mempipe.engine.http import HTTPEngine
    from mempipe.engine.replicas import Replicas

    specs = [s.strip() for s in name.split(",") if s.strip()]
    return HTTPEngine(specs[0]) if len(specs) == 1 else Replicas(specs)
