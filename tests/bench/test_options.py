"""The who-said benchmarks share their options (bench/whosaid.py `book_parser`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALICE = ROOT / "examples" / "data" / "alice_in_wonderland.txt"


@pytest.mark.parametrize("script", ["whosaid", "params", "kv_memory", "kv_context",
                                    "reretrieval"])
def test_a_book_without_its_questions_is_refused(script: str) -> None:
    """Without --qa, --book was once ignored and every bundled book measured instead."""
    result = subprocess.run([sys.executable, f"bench/{script}.py", "--book", str(ALICE)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"{script}.py: error: --book and --qa go together"
