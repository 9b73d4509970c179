"""bench/kv_context.py: every arm reads the same recalled passages, and `kept` counts
only the questions text answers right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.kv_context import ARMS, run_book

ALICE = Path(__file__).resolve().parents[2] / "examples" / "data" / "alice_in_wonderland.txt"


def test_each_arm_answers_every_question_at_every_k(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMPIPE_MODEL", str(tiny_model))
    monkeypatch.setenv("MEMPIPE_DTYPE", "float32")
    book = tmp_path / "book.txt"
    book.write_text(ALICE.read_text()[:20_000])
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in [
        {"question": 'Who said "Oh dear! Oh dear! I shall be late"?', "answer": "Rabbit"},
        {"question": 'Who said "I wonder how many miles I’ve fallen"?', "answer": "Alice"}]))
    result = run_book(book, qa, [1, 2], limit=None)
    assert result["questions"] == 2
    assert [arm["name"] for arm in result["arms"]] == ARMS
    for arm in result["arms"]:
        assert set(arm["accuracy_by_k"]) == {"1", "2"}
        assert all(0 <= a <= 1 for a in arm["accuracy_by_k"].values())
        assert 0 <= arm["kept"] <= 1
    text = next(arm for arm in result["arms"] if arm["name"] == "text")
    assert text["kept"] == (1.0 if any(text["accuracy_by_k"].values()) else 0.0)
