"""The per-model memo: computes only what it lacks, keeps order, evicts the least recently used."""

from __future__ import annotations

import threading

import pytest

from mmdemo.models.memo import Memo


def squares(calls: list[list[int]]):
    def compute(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        return [k * k for k in keys]
    return compute


def test_computes_only_missing_keys_once_and_keeps_the_asked_order():
    memo, calls = Memo(), []
    assert memo.get_many([3, 1, 2], squares(calls)) == [9, 1, 4]
    assert memo.get_many([2, 5, 3, 5], squares(calls)) == [4, 25, 9, 25]
    assert calls == [[3, 1, 2], [5]]  # a key asked twice in one call is computed once
    assert (memo.hits, memo.misses) == (2, 4)
    assert memo.get_many([], squares(calls)) == [] and len(calls) == 2


def test_evicts_the_least_recently_used_beyond_capacity():
    memo, calls = Memo(capacity=3), []
    memo.get_many([1, 2, 3], squares(calls))
    memo.get_many([1], squares(calls))  # 1 is now the most recent; 2 the coldest
    memo.get_many([4], squares(calls))
    assert len(memo) == 3
    calls.clear()
    memo.get_many([1, 3, 4, 2], squares(calls))
    assert calls == [[2]]


def test_a_failed_compute_stores_nothing_and_a_short_answer_is_refused():
    memo = Memo()

    def broken(keys):
        raise ValueError("tower failed")

    with pytest.raises(ValueError, match="tower failed"):
        memo.get_many([1, 2], broken)
    assert len(memo) == 0
    with pytest.raises(RuntimeError, match="compute returned 1 values for 2 keys"):
        memo.get_many([1, 2], lambda keys: [0])
    assert len(memo) == 0


def test_concurrent_callers_all_get_correct_values():
    memo = Memo(capacity=50)
    errors: list[str] = []

    def worker(offset: int) -> None:
        for i in range(200):
            keys = [(offset + i + j) % 80 for j in range(5)]
            if memo.get_many(keys, lambda ks: [k * k for k in ks]) != [k * k for k in keys]:
                errors.append(f"wrong values for {keys}")

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(memo) == 50
