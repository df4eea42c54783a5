"""The request batcher with fake batch functions: gathering, limits, errors, no batching at size 1."""

from __future__ import annotations

import threading
import time

import pytest

from mmdemo.runtime.batching import Batcher


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.calls.append(list(items))
        time.sleep(self.delay)
        return [item * 10 for item in items]


def submit_all(batcher: Batcher, keys_items: list[tuple[str, int]], run) -> dict[int, tuple[int, int]]:
    results: dict[int, tuple[int, int]] = {}
    barrier = threading.Barrier(len(keys_items))

    def one(key: str, item: int) -> None:
        barrier.wait()
        batched = batcher.submit(key, item, run)
        results[item] = (batched.result, batched.batch_size)

    threads = [threading.Thread(target=one, args=pair) for pair in keys_items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_requests_share_one_call_and_get_their_own_results():
    run = Recorder()
    results = submit_all(Batcher(0.2, 8), [("k", i) for i in range(6)], run)
    assert {item: result for item, (result, _) in results.items()} == {i: i * 10 for i in range(6)}
    assert len(run.calls) == 1 and sorted(run.calls[0]) == list(range(6))
    assert all(size == 6 for _, size in results.values())


def test_batches_never_exceed_the_maximum():
    run = Recorder()
    results = submit_all(Batcher(0.2, 4), [("k", i) for i in range(10)], run)
    assert len(results) == 10
    assert all(len(call) <= 4 for call in run.calls)
    assert sum(len(call) for call in run.calls) == 10


def test_different_keys_are_not_mixed():
    run = Recorder()
    submit_all(Batcher(0.2, 8), [("a", 1), ("b", 2), ("a", 3), ("b", 4)], run)
    assert sorted(sorted(call) for call in run.calls) == [[1, 3], [2, 4]]


def test_a_lone_request_waits_at_most_the_window():
    run = Recorder()
    started = time.monotonic()
    batched = Batcher(0.05, 8).submit("k", 7, run)
    assert batched.result == 70 and batched.batch_size == 1
    assert time.monotonic() - started < 0.5


def test_a_request_with_no_others_on_their_way_does_not_wait_for_the_window():
    run = Recorder()
    asked: list[int] = []

    def nobody_coming(gathered: int) -> bool:
        asked.append(gathered)
        return False

    started = time.monotonic()
    batched = Batcher(5.0, 8).submit("k", 3, run, others_coming=nobody_coming)
    assert batched.result == 30 and batched.batch_size == 1
    assert asked == [1] and time.monotonic() - started < 2.0  # far from the 5 s window


def test_a_request_waits_for_those_on_their_way_and_they_share_its_batch():
    run = Recorder()
    batcher = Batcher(5.0, 2)
    results = {}

    def second() -> None:
        time.sleep(0.2)  # arrives while the first waits
        results["second"] = batcher.submit("k", 2, run).batch_size

    thread = threading.Thread(target=second)
    thread.start()
    first = batcher.submit("k", 1, run, others_coming=lambda gathered: True)
    thread.join()
    assert first.batch_size == 2 and results["second"] == 2 and run.calls == [[1, 2]]


def test_requests_arriving_while_a_batch_runs_form_the_next_batch_together():
    run = Recorder(delay=0.4)
    batcher = Batcher(0.01, 8)
    sizes: dict[int, int] = {}

    def one(item: int) -> None:
        sizes[item] = batcher.submit("k", item, run, others_coming=lambda gathered: True).batch_size

    first = threading.Thread(target=one, args=(0,))
    first.start()
    time.sleep(0.1)  # the first batch is running
    later = [threading.Thread(target=one, args=(i,)) for i in range(1, 6)]
    for t in later:
        t.start()
        time.sleep(0.03)  # further apart than the window: without turns, each would run alone
    for t in [first, *later]:
        t.join()
    assert [sorted(call) for call in run.calls] == [[0], [1, 2, 3, 4, 5]]
    assert sizes == {0: 1, 1: 5, 2: 5, 3: 5, 4: 5, 5: 5}


def test_size_one_runs_each_request_alone_without_waiting():
    run = Recorder()
    started = time.monotonic()
    results = submit_all(Batcher(5.0, 1), [("k", i) for i in range(3)], run)
    assert time.monotonic() - started < 2.0
    assert len(run.calls) == 3 and all(size == 1 for _, size in results.values())


def test_an_error_reaches_every_request_of_the_batch():
    def broken(items):
        raise ValueError("model exploded")

    errors = []
    barrier = threading.Barrier(3)
    batcher = Batcher(0.2, 8)

    def one(item):
        barrier.wait()
        try:
            batcher.submit("k", item, broken)
        except ValueError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["model exploded"] * 3
    assert Batcher(0.0, 8).submit("k", 1, Recorder()).result == 10  # the next batch works


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch >= 1"):
        Batcher(0.01, 0)
