"""Shared fixtures: a private MEMPIPE_HOME for every test, and a tiny random-weight Llama
with the default model's tokenizer, so tests run offline in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mempipe.engine.local import LocalEngine
from mempipe.engine.models import default_gguf

ROOT = Path(__file__).resolve().parent.parent
ALICE = ROOT / "examples" / "data" / "alice_in_wonderland.txt"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing a test does touches the real mempipe home."""
    path = tmp_path / "home"
    monkeypatch.setenv("MEMPIPE_HOME", str(path))
    monkeypatch.delenv("MEMPIPE_MODEL", raising=False)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's tokenizer and chat template
    (MEMPIPE_TEST_TINY_MODEL names one built before, for machines without the GGUF file)."""
    if prebuilt := os.environ.get("MEMPIPE_TEST_TINY_MODEL"):
        return Path(prebuilt)
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def build_tiny_model(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = default_gguf()
    assert gguf is not None, "tests need the default model's package: make install"
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def engine(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> LocalEngine:
    """The tiny model in fp32: comparisons with transformers are then exact."""
    monkeypatch.setenv("MEMPIPE_DTYPE", "float32")
    return LocalEngine(str(tiny_model))


def sh(repo: Path, *args: str) -> str:
    """stdout of a command run in `repo`; it must succeed."""
    return subprocess.run(args, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    sh(path, "git", "init", "-q", "-b", "main")
    sh(path, "git", "config", "user.email", "t@example.com")
    sh(path, "git", "config", "user.name", "Test")
    (path / "app.py").write_text("def greet(name):\n    return 'hi ' + name\n")
    (path / "old_name.py").write_text("VALUE = 1\n" * 20)
    (path / "gone.txt").write_text("bye\n")
    (path / "run.sh").write_text("echo run\n")
    sh(path, "git", "add", ".")
    sh(path, "git", "commit", "-q", "-m", "start")
    return path


def mempipe(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, as a user's shell would."""
    return subprocess.run([sys.executable, "-m", "mempipe", *args], input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
