"""How live steps share the CPU: at most one per core at once, admitted in the order they came, and each with all of
torch's threads while it runs alone, one while others run beside it.

Steps of several streams that all run at once share the cores by chance: one stream of four could get 9 steps in
where the others got 15, its words seconds late. Admitted in order, each stream waits its turn, and no more steps
run than there are cores to run them (docs/live.md has the figures).
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
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch


class FairSlots:
    """At most `size` holders at once, let in strictly in the order they asked (a plain semaphore lets a thread that
    just released take its slot straight back ahead of those waiting)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self.held = 0

    @contextmanager
    def hold(self, size: int) -> Iterator[int]:
        """Wait for a slot in turn; yields how many slots are held, this one included."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            self._changed.wait_for(lambda: self._waiting[0] is ticket and self.held < size)
            self._waiting.popleft()
            self.held += 1
            held = self.held
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield held
        finally:
            with self._changed:
                self.held -= 1
                self._changed.notify_all()


_slots = FairSlots()  # the live steps running on the CPU now


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
def live_step_threads(device: torch.device) -> Iterator[bool]:
    """Around one live step on a CPU: wait for a core in turn, then run with one thread while another live step runs
    too, torch's count otherwise. Yields whether another live step runs beside this one (always False on a GPU,
    where nothing changes)."""
    if device.type != "cpu":
        yield False
        return
    with _slots.hold(cores()) as held:
        if held > 1:
            with this_thread_uses(1):
                yield True
        else:
            yield False


@cache
def cores() -> int:
    """The cores torch computes on (its thread count, as the process started)."""
    return max(1, torch.get_num_threads())
