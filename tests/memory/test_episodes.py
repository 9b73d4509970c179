
"""Episode boundaries: where surprise jumps, within the length limits, on any length."""

from itertools import pairwise

import pytest

from mempipe.memory import Memory, Segmenter, Store
from mempipe.memory.episodes import boundaries, event_spans


def test_a_surprise_spike_opens_an_event() -> None:
    calm = [1.0, 1.2, 0.9, 1.1] * 10
    surprise = [*calm[:20], 9.0, *calm[:19]]
    assert boundaries(surprise, gamma=2.0, min_tokens=4, max_tokens=100) == [0, 20]
    assert len(boundaries(surprise, gamma=0.5, min_tokens=4, max_tokens=100)) > 2


def test_events_keep_their_minimum_and_maximum_length() -> None:
    spiky = [1.0, 8.0] * 50
    starts = boundaries(spiky, gamma=1.0, min_tokens=8, max_tokens=100)
    assert all(b - a >= 8 for a, b in pairwise(starts))
    flat = [1.0] * 300
    starts = boundaries(flat, gamma=1.0, min_tokens=8, max_tokens=64)
    lengths = [b - a for a, b in pairwise([*starts, 300])]
    assert max(lengths) <= 64 and len(starts) >= 5


@pytest.mark.slow
def test_events_cover_a_text_longer_than_one_window(engine, tmp_path) -> None:
    text = " ".join(f"Sentence {i} about the garden. Then a zebra ate {i} pianos!"
                    for i in range(300))
    spans = event_spans(text, engine, gamma=1.0, max_tokens=64)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a == b_prev for (_, b_prev), (a, _) in pairwise(spans))
    assert max(engine.count_tokens([text[a:b] for a, b in spans])) <= 64 + 2
    assert len(spans) > 20
    memory = Memory("events", Store(tmp_path / "m.db"))
    memory.remember(text, segmenter=Segmenter(tokens=64, engine=engine))
    assert "".join(p.text for p in memory.passages()) == text
