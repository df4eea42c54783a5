"""The shared model cache: one entry per (model id, revision, device, dtype), LRU-evicted by bytes.

Nothing here knows about Gradio or tasks. A caller asks for a key with a loader; the cache loads it
once however many callers ask at the same time, pins it while any caller uses it, and evicts the
least recently used unpinned entries when a new load would exceed the memory budget.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mmdemo.errors import BusyError, ModelTooLargeError
from mmdemo.models.loading import ModelKey, measure_nbytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntryStats:
    key: ModelKey
    nbytes: int
    load_seconds: float
    hits: int
    last_used: float  # wall-clock time.time()
    in_use: int


@dataclass(frozen=True)
class CacheStats:
    entries: tuple[EntryStats, ...]  # coldest first
    budget_bytes: int
    used_bytes: int
    hits: int
    misses: int
    evictions: int


@dataclass
class _Entry:
    key: ModelKey
    value: Any
    nbytes: int
    load_seconds: float
    hits: int = 0
    last_used: float = field(default_factory=time.time)
    in_use: int = 0


@dataclass
class _PendingLoad:
    done: bool = False
    error: BaseException | None = None


def release_memory() -> None:
    """Collect dropped references and return freed memory: the accelerator's to the driver, the heap's to the OS."""
    gc.collect()
    try:
        from mmdemo.models.devices import empty_device_cache, trim_host_heap
    except ImportError:  # pragma: no cover
        return
    empty_device_cache()
    trim_host_heap()


class ModelCache:
    """A thread-safe LRU cache of loaded models, bounded by a memory budget in bytes.

    Args:
        budget_bytes: the most bytes that resident entries (plus loads in flight) may hold.
        size_of: measures a loaded value in bytes (default: `measure_nbytes`).
        on_evict: called after entries were dropped, outside the lock (default: `release_memory`).
        wait_seconds: how long a load waits for running requests to release memory before giving up.
    """

    def __init__(
        self,
        budget_bytes: int,
        *,
        size_of: Callable[[Any], int] = measure_nbytes,
        on_evict: Callable[[], None] = release_memory,
        wait_seconds: float = 120.0,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"Memory budget must be positive, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._size_of = size_of
        self._on_evict = on_evict
        self._wait_seconds = wait_seconds
        self._entries: OrderedDict[ModelKey, _Entry] = OrderedDict()  # coldest first
        self._loading: dict[ModelKey, _PendingLoad] = {}
        self._reserved = 0  # estimated bytes of loads in flight
        self._cond = threading.Condition()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    # -- public API -------------------------------------------------------------------------

    @contextmanager
    def use(
        self,
        key: ModelKey,
        loader: Callable[[], Any],
        *,
        estimate: int = 0,
        on_load: Callable[[ModelKey], None] | None = None,
    ) -> Iterator[Any]:
        """Yield the value for `key`, loading it first if needed; it cannot be evicted until the block ends.

        Args:
            key: which model.
            loader: builds the value; called at most once per miss, outside the cache's lock.
            estimate: expected bytes, to make room before loading (0 if unknown: room is made after).
            on_load: told when this call is about to load (for a progress message).
        """
        value = self._acquire(key, loader, estimate, on_load)
        try:
            yield value
        finally:
            self._release(key)

    def get_or_load(self, key: ModelKey, loader: Callable[[], Any], *, estimate: int = 0) -> None:
        """Make sure `key` is resident (preloading) without keeping it pinned."""
        with self.use(key, loader, estimate=estimate):
            pass

    def unload(self, key: ModelKey) -> bool:
        """Evict one entry now; False if it was not resident. Refuses an entry in use."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None:
                return False
            if entry.in_use:
                raise BusyError("error.memory.in_use", model=key.model_id)
            self._drop(entry)
            self._cond.notify_all()
        self._on_evict()
        return True

    def clear(self) -> int:
        """Evict every unpinned entry; returns how many were evicted."""
        with self._cond:
            idle = [e for e in self._entries.values() if not e.in_use]
            for entry in idle:
                self._drop(entry)
            self._cond.notify_all()
        if idle:
            self._on_evict()
        return len(idle)

    def __contains__(self, key: object) -> bool:
        with self._cond:
            return key in self._entries

    def stats(self) -> CacheStats:
        with self._cond:
            entries = tuple(
                EntryStats(e.key, e.nbytes, e.load_seconds, e.hits, e.last_used, e.in_use)
                for e in self._entries.values()
            )
            return CacheStats(
                entries=entries,
                budget_bytes=self.budget_bytes,
                used_bytes=self._used(),
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
            )

    # -- internals --------------------------------------------------------------------------

    def _used(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def _acquire(self, key, loader, estimate, on_load) -> Any:
        with self._cond:
            while True:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.in_use += 1
                    entry.hits += 1
                    entry.last_used = time.time()
                    self._hits += 1
                    self._entries.move_to_end(key)
                    return entry.value
                pending = self._loading.get(key)
                if pending is None:
                    break
                # Someone else is loading this key: wait for them instead of loading it twice.
                while not pending.done:
                    self._cond.wait()
                if pending.error is not None:
                    raise pending.error
            self._misses += 1
            pending = _PendingLoad()
            self._loading[key] = pending
            try:
                evicted = self._make_room(estimate, key) if estimate else 0
            except BaseException as e:
                self._finish(key, pending, e)
                raise
            self._reserved += estimate
        if evicted:
            self._on_evict()

        try:
            if on_load is not None:
                on_load(key)
            started = time.perf_counter()
            value = loader()
            load_seconds = time.perf_counter() - started
            nbytes = int(self._size_of(value))
        except BaseException as e:
            with self._cond:
                self._reserved -= estimate
                self._finish(key, pending, e)
            raise

        with self._cond:
            self._reserved -= estimate
            try:
                evicted = self._make_room(nbytes, key)
            except BaseException as e:
                self._finish(key, pending, e)
                del value
                self._on_evict()
                raise
            self._entries[key] = _Entry(key, value, nbytes, load_seconds, in_use=1)
            self._finish(key, pending, None)
        log.info("Loaded %s: %.1f MB in %.2f s", key, nbytes / 1e6, load_seconds)
        if evicted:
            self._on_evict()
        return value

    def _finish(self, key: ModelKey, pending: _PendingLoad, error: BaseException | None) -> None:
        """Mark a load as finished (caller holds the lock) and wake everyone waiting."""
        pending.done = True
        pending.error = error
        self._loading.pop(key, None)
        self._cond.notify_all()

    def _make_room(self, nbytes: int, key: ModelKey) -> int:
        """Evict cold unpinned entries until `nbytes` fits; wait for pinned ones. Caller holds the lock."""
        if nbytes > self.budget_bytes:
            raise ModelTooLargeError("error.memory.model_too_large", model=key.model_id, size_gb=nbytes / 1e9,
                                     budget_gb=self.budget_bytes / 1e9)
        evicted = 0
        deadline = time.monotonic() + self._wait_seconds
        while self._used() + self._reserved + nbytes > self.budget_bytes:
            coldest = next((e for e in self._entries.values() if not e.in_use), None)
            if coldest is not None:
                self._drop(coldest)
                evicted += 1
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BusyError("error.memory.busy", model=key.model_id)
            self._cond.wait(remaining)
        return evicted

    def _drop(self, entry: _Entry) -> None:
        """Forget an entry (caller holds the lock); memory is returned by `on_evict` afterwards."""
        del self._entries[entry.key]
        entry.value = None
        self._evictions += 1
        log.info("Evicted %s (%.1f MB)", entry.key, entry.nbytes / 1e6)

    def _release(self, key: ModelKey) -> None:
        """Unpin `key`. Its size is measured again: a model may hold more than it was loaded with (explain's
        transposed weights, `mmdemo.explain.grads.keep_transposed_weights`); colder entries go if it no longer fits."""
        evicted = 0
        with self._cond:
            entry = self._entries.get(key)
            if entry is not None:
                entry.in_use -= 1
                entry.last_used = time.time()
                entry.nbytes = int(self._size_of(entry.value))
                while self._used() + self._reserved > self.budget_bytes:
                    coldest = next((e for e in self._entries.values() if not e.in_use and e is not entry), None)
                    if coldest is None:
                        break
                    self._drop(coldest)
                    evicted += 1
            self._cond.notify_all()
        if evicted:
            self._on_evict()
