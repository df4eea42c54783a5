"""Request batching: concurrent requests that can share one forward pass are gathered and run together.

The first request for a key opens a batch and waits up to `window` seconds (or until the batch is full)
for others with the same key; then it runs the whole batch once and hands each request its own result.
Batches of one key run one after another: while one runs, the next keeps gathering (up to the maximum), so
under load a batch holds whatever arrived during the one before. No request waits longer than the window plus
the batch running before it, and a request with no others on their way (the caller says so) skips the window.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


class _Lane:
    """One key's turn to run (weakly kept: a key nobody is using holds nothing)."""

    def __init__(self) -> None:
        self.turn = threading.Lock()


@dataclass
class _Batch:
    lane: _Lane
    items: list[Any] = field(default_factory=list)
    results: Sequence[Any] | None = None
    error: BaseException | None = None
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Batched:
    """One request's result and the size of the batch it ran in."""

    result: Any
    batch_size: int


class Batcher:
    """Gathers items submitted under equal keys within a short window into one call.

    Args:
        window_seconds: how long the first request of a batch waits for others.
        max_batch: the most items in one call; 1 turns batching off (no waiting at all).
    """

    def __init__(self, window_seconds: float, max_batch: int) -> None:
        if max_batch < 1 or window_seconds < 0:
            raise ValueError(f"Batching needs max_batch >= 1 and a window >= 0, got {max_batch} and {window_seconds}")
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch] = {}
        self._lanes: weakref.WeakValueDictionary[Hashable, _Lane] = weakref.WeakValueDictionary()

    def submit(self, key: Hashable, item: Any, run: Callable[[list[Any]], Sequence[Any]],
               others_coming: Callable[[int], bool] | None = None) -> Batched:
        """Run `item` alone or with others submitted under `key`; `run` maps a list of items to their results.

        `others_coming(n)` tells a batch's first request, holding n items, whether more may arrive: when not, it
        runs at once instead of waiting out the window (a lone visitor pays no batching delay).
        """
        if self.max_batch == 1:
            return Batched(run([item])[0], 1)
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                lane = self._lanes.get(key)
                if lane is None:
                    lane = self._lanes[key] = _Lane()
                batch = self._open[key] = _Batch(lane)
            index = len(batch.items)
            batch.items.append(item)
            if len(batch.items) >= self.max_batch:
                self._open.pop(key, None)  # full: later requests start a new batch
                batch.full.set()
        if leader:
            if others_coming is None or others_coming(len(batch.items)):
                batch.full.wait(self.window_seconds)
            with batch.lane.turn:  # the key's previous batch is done; this one gathered meanwhile
                with self._lock:
                    if self._open.get(key) is batch:
                        del self._open[key]
                try:
                    batch.results = run(list(batch.items))
                    if len(batch.results) != len(batch.items):
                        raise RuntimeError(f"A batch of {len(batch.items)} gave {len(batch.results)} results")
                except BaseException as e:  # every request of the batch gets the error
                    batch.error = e
                finally:
                    batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return Batched(batch.results[index], len(batch.items))
