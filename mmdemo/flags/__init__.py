"""Flags: testers' ratings and notes on results, kept with their inputs (store), and exported as test sets."""

from __future__ import annotations

import threading

from mmdemo.config import Settings, flagging_enabled
from mmdemo.flags.store import FlagStore, FlagStoreError

__all__ = ["FlagStore", "FlagStoreError", "open_store"]

_STORES: dict[tuple[str, int], FlagStore] = {}
_LOCK = threading.Lock()


def open_store(settings: Settings) -> FlagStore | None:
    """The app's flag store (one per folder, so its writers share one lock); None when flagging is off."""
    if not flagging_enabled(settings):
        return None
    key = (str(settings.flag_dir), settings.flag_max_bytes)
    with _LOCK:
        if key not in _STORES:
            _STORES[key] = FlagStore(settings.flag_dir, settings.flag_max_bytes)
        return _STORES[key]
