"""Values derived from one loaded model and reused across requests, such as the text embeddings of prompts.

A memo lives on its model's bundle, so it shares the bundle's life in the cache: evicting the model drops them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

# Enough for every prompt of a busy demo: 4,096 CLIP L/14 text embeddings are 12.6 MB.
DEFAULT_CAPACITY = 4096


class Memo:
    """A bounded, thread-safe LRU from keys to values computed from a model: computes only what it lacks."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list[Hashable]], Sequence[Any]]) -> list[Any]:
        """The values for `keys`, in order; `compute(missing)` makes the missing ones, in one call.

        compute runs outside the lock: two requests may compute the same key at once, and the later one wins.
        """
        found: dict[Hashable, Any] = {}
        with self._lock:
            for key in keys:
                if key in self._values:
                    self._values.move_to_end(key)
                    found[key] = self._values[key]
            missing = [key for key in dict.fromkeys(keys) if key not in found]
            self.hits += len(found)
            self.misses += len(missing)
        if missing:
            values = list(compute(missing))
            if len(values) != len(missing):
                raise RuntimeError(f"compute returned {len(values)} values for {len(missing)} keys")
            found.update(zip(missing, values, strict=True))
            with self._lock:
                for key, value in zip(missing, values, strict=True):
                    self._values[key] = value
                    self._values.move_to_end(key)
                while len(self._values) > self.capacity:
                    self._values.popitem(last=False)
        return [found[key] for key in keys]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
