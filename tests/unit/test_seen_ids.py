"""The filter of stored event ids: never misses an id added, rarely flags one that was not."""

from __future__ import annotations

import numpy as np

from ingest.seen_ids import IDS_PER_WORD, MIN_WORDS, SeenIds


def _hashes(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64 - 1, n, dtype=np.uint64)


def test_every_added_id_is_flagged() -> None:
    seen = SeenIds(expected=50_000)
    added = _hashes(1, 50_000)
    for chunk in np.array_split(added, 7):
        seen.add(chunk)
    assert seen.may_contain(added).all()
    assert seen.count == 50_000


def test_few_new_ids_are_flagged_when_full() -> None:
    seen = SeenIds(expected=100_000)
    seen.add(_hashes(2, seen.capacity))
    flagged = seen.may_contain(_hashes(3, 200_000)).mean()
    assert 0 < flagged < 0.015  # about 0.7 % by design; 0 would mean it sets no bits
    assert not seen.full


def test_it_says_when_it_holds_more_than_it_was_sized_for() -> None:
    seen = SeenIds(expected=0)
    assert seen.capacity == MIN_WORDS * IDS_PER_WORD
    seen.add(_hashes(4, seen.capacity + 1))
    assert seen.full
    bigger = SeenIds(expected=2 * seen.count)
    assert bigger.capacity >= 2 * seen.count


def test_an_empty_filter_flags_nothing() -> None:
    assert not SeenIds(expected=10).may_contain(_hashes(5, 1000)).any()
