"""How many CPU threads one live step may use: all of torch's while it runs alone, one while others run beside it.

On two cores, four live streams each stepping with torch's two threads make eight threads contend for two cores:
each step's many small parallel regions then wait for workers that another step holds. One thread per step while
several run does the same work with less CPU (`python -m benchmarks.live --streams 4 --realtime`; docs/live.md).
`torch.set_num_threads` cannot say that for one call: it sets a count that every thread started later takes up. But
OpenMP keeps the count per thread, and a CPU model call runs on a thread of its own (`runtime.model_threads`), so a
step sets its own thread's count through libgomp and puts it back afterwards, and nothing else changes.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch

_lock = threading.Lock()
_running = 0  # live steps running now


@cache
def _libgomp() -> Any:
    """torch's own GNU OpenMP runtime, already loaded in this process; None where torch uses another (or none)."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return None
    # Other wheels bring their own copy (sentencepiece does): torch's is the one in torch's folder or its wheel's
    # `torch.libs` beside it.
    torch_root = Path(torch.__file__).resolve().parent
    folders = {torch_root / "lib", torch_root.parent / "torch.libs"}
    paths = {line.split()[-1] for line in maps.splitlines() if "/libgomp" in line}
    paths = {path for path in paths if Path(path).parent in folders}
    if len(paths) != 1:
        return None
    library = ctypes.CDLL(paths.pop())  # the loaded copy: dlopen of a loaded path returns it
    library.omp_get_max_threads.restype = ctypes.c_int
    return library


@contextmanager
def this_thread_uses(threads: int) -> Iterator[None]:
    """Parallel regions that the calling thread starts use at most `threads` threads (OpenMP's per-thread count);
    no change where torch does not run on libgomp."""
    library = _libgomp()
    if library is None:
        yield
        return
    torch.get_num_threads()  # torch sets a thread's count when the thread first uses it: let that happen first
    before = library.omp_get_max_threads()
    library.omp_set_num_threads(threads)
    try:
        yield
    finally:
        library.omp_set_num_threads(before)


@contextmanager
def live_step_threads(device: torch.device) -> Iterator[None]:
    """Around one live step: one thread on a CPU while another live step runs too, torch's count otherwise."""
    global _running
    with _lock:
        _running += 1
        crowded = _running > 1
    try:
        if crowded and device.type == "cpu":
            with this_thread_uses(1):
                yield
        else:
            yield
    finally:
        with _lock:
            _running -= 1
