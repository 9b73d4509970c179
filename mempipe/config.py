"""Where mempipe keeps its files and which model it uses, from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_BUDGET = 2048


def home() -> Path:
    """The mempipe home: `MEMPIPE_HOME`, else the platform's cache dir; created on first use."""
    path = Path(os.environ.get("MEMPIPE_HOME") or platformdirs.user_cache_path("mempipe"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_name(override: str | None = None) -> str:
    """The model to run: an explicit choice, else `MEMPIPE_MODEL`, else the bundled default."""
    return override or os.environ.get("MEMPIPE_MODEL") or DEFAULT_MODEL


def is_url(model: str) -> bool:
    """Whether `model` names servers (`http://HOST:PORT/v1`, comma-separated replicas)
    rather than a model to load."""
    return model.startswith(("http://", "https://"))
