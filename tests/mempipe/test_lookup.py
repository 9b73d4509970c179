"""Drafts from the text so far: what followed the last tokens where they occurred before."""

from __future__ import annotations

from mempipe.engine.lookup import draft


def test_the_latest_earlier_run_of_the_last_three_tokens_is_followed() -> None:
    history = [1, 2, 3, 9, 9, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    assert draft(history, 3) == [4, 5, 6]


def test_a_shorter_run_is_followed_where_the_longer_never_occurred() -> None:
    assert draft([5, 6, 7, 8, 0, 7], 2) == [8, 0]   # only "7" occurred before
    assert draft([1, 2, 3, 4], 5) == []              # "4" never did


def test_a_loop_is_guessed_whole_past_the_end_of_what_was_written() -> None:
    assert draft([8, 1, 2, 1, 2, 1, 2], 5) == [1, 2, 1, 2, 1]


def test_no_guess_where_none_is_wanted_or_nothing_came_before() -> None:
    assert draft([1, 2, 1, 2], 0) == []
    assert draft([1], 4) == []
