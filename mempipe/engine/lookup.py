"""Drafts from the text so far (prompt lookup): a reply often repeats what it was shown,
a question's words or a sentence of the evidence, so the tokens that followed the last
few written, where they occurred before, are a guess at what comes next. A decoding step
that reads the guess beside the newest token checks every guessed token in one pass (the
greedy choice at each position either confirms it or replaces it); on a CPU a step's time
goes to reading the weights, so checking seven tokens costs about what writing one does."""

from __future__ import annotations

from collections.abc import Sequence

DRAFT_TOKENS = 7  # guessed tokens a step checks (bench/lookup.py)
MATCH = (3, 2, 1)  # the longest run of the last tokens found earlier is followed


def draft(history: Sequence[int], most: int = DRAFT_TOKENS) -> list[int]:
    """Up to `most` tokens that followed the latest earlier occurrence of the last 3 (else
    2, else 1) tokens of `history`; [] when they never occurred before. The copy may run
    on into what it copies, so a loop being written is guessed whole."""
    if most <= 0:
        return []
    for n in MATCH:
        if len(history) <= n:
            continue
        tail = list(history[-n:])
        for start in range(len(history) - n - 1, -1, -1):
            if history[start] == tail[0] and list(history[start:start + n]) == tail:
                guess: list[int] = []
                for source in range(start + n, start + n + most):
                    guess.append(history[source] if source < len(history)
                                 else guess[source - len(history)])
                return guess
    return []
