"""bench/kv_memory.py's held-out reader: it is never taught the measured passages."""

from __future__ import annotations

import json
from pathlib import Path

from bench.kv_memory import held_out


def test_held_out_cuts_each_measured_quote_with_its_neighbouring_paragraphs(
        tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}. " + "words " * 40 for i in range(30)]
    text = "\n\n".join(paragraphs)
    qa = tmp_path / "qa.jsonl"
    at = [text.index("Paragraph 10."), text.index("Paragraph 25.")]
    qa.write_text("".join(json.dumps({"question": "?", "offset": a}) + "\n" for a in at))
    kept = held_out(text, qa, around=300)  # a paragraph and its break: 256 characters
    gone = {8, 9, 10, 11, 23, 24, 25, 26}  # each within 300 characters of a quote
    for i in range(len(paragraphs)):
        assert (f"Paragraph {i}." in kept) == (i not in gone), i
