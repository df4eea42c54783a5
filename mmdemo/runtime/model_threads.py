"""Where CPU model work runs: each model call, and each load, on a thread of its own that ends with it.

torch's CPU builds run their parallel regions with GNU OpenMP, which gives every thread that starts one a team of
worker threads of its own, kept as long as that thread lives. Once the process holds more of those threads than it
has CPUs, libgomp stops letting any team's workers spin between regions: each of the thousands of small regions
of a decoding loop then waits for its workers to wake up. A web server hands requests to whichever of its worker
threads is free, so they soon hold a team each, idle but alive, and every model call slows down
(`python -m benchmarks.model_threads` measures it; docs/performance.md has the figures).
A thread that ends takes its team with it, so a call on a thread of its own leaves at most one team behind while it
runs, however many threads serve requests. (On a GPU the models' work is not OpenMP's: nothing moves there.)
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a new thread, in the caller's context (Gradio's progress, ...); its result, or its exception
    raised here."""
    context = contextvars.copy_context()
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append((True, context.run(fn, *args)))
        except BaseException as e:  # noqa: BLE001  (handed to the caller, whatever it is)
            outcome.append((False, e))

    thread = threading.Thread(target=call, name=f"mmdemo-{getattr(fn, '__name__', 'call')}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
