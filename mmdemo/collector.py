"""Python's cyclic garbage collector around the app's start-up.

Importing gradio, torch and transformers and building the app leaves about 500,000 long-lived objects, none of them
garbage, and the collector's full passes over them are pure cost, each holding the GIL (`python -m
benchmarks.startup_gc`). `app.py` pauses the collector before those imports; once the page is served and the model code
is imported, `settle` collects once (start-up's own garbage is freed, not kept), moves what survives to the permanent
generation (`gc.freeze`: later full passes, during a model load or after an eviction, skip it) and resumes collection.

Only a process that called `pause` is touched: a test or a library user that imports mmdemo keeps its collector.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

_paused = False


def pause() -> None:
    """Stop automatic collection until `settle`."""
    global _paused
    _paused = True
    gc.disable()


def settle(*, freeze: bool = True) -> None:
    """Collect once, freeze the survivors (unless `freeze` is False) and resume automatic collection.

    Freeze nothing that may be dropped later: a frozen object in a reference cycle is never collected. Start-up's
    modules and the app's blocks live as long as the process; a preloaded model does not (it may be evicted).
    """
    global _paused
    if not _paused:
        return
    started = time.perf_counter()
    unreachable = gc.collect()
    if freeze:
        gc.freeze()
    gc.enable()
    _paused = False
    log.info("Garbage collector resumed: %d start-up objects collected, %d frozen, in %.2f s", unreachable,
             gc.get_freeze_count(), time.perf_counter() - started)
