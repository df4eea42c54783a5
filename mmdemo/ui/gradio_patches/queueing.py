"""Gradio's request queue, with loops that wait for work instead of looking for it every few milliseconds.

Gradio 6's queue runs two loops on the server's event loop, busy or idle: the dispatcher (`start_processing`) looks
at the queue every millisecond and the progress sender (`start_progress_updates`) at the running jobs every 10 ms:
a steady share of a core while nobody uses the app (`python -m benchmarks.queue_wakeup` measures it), each look
taking the GIL from whatever the app is computing. Only a request joining the queue (`push`) or a job ending
(`process_events`: a worker and a concurrency slot free again) gives the dispatcher something to do, and only a job
starting gives the progress sender something to send. `WakingQueue` signals those and runs Gradio's loops waiting on
the signals; `install()` makes Gradio build its queues from it. Apply it through `mmdemo.ui.gradio_patches.install()`,
which checks the Gradio version first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import gradio.queueing
from gradio.utils import run_coro_in_background, set_task_name

GRADIO_QUEUE = gradio.queueing.Queue  # Gradio's own class, before install() replaces the name

# How long a loop waits for its signal before it looks anyway: a guard, should a later Gradio free a worker or start
# a job somewhere else. The signals themselves wake the loops at once.
LOOK_ANYWAY_S = 0.2


class WakingQueue(GRADIO_QUEUE):
    """Gradio's `Queue` whose dispatcher sleeps until a request joins or a job ends, and whose progress sender
    sleeps while no job runs."""

    # Made in start(), on the server's event loop: set when the dispatcher may have work, when a job starts.
    _work: asyncio.Event | None = None
    _job_started: asyncio.Event | None = None

    def start(self) -> None:
        self._work, self._job_started = asyncio.Event(), asyncio.Event()
        super().start()

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()

    async def push(self, *args: Any, **kwargs: Any) -> Any:
        outcome = await super().push(*args, **kwargs)
        self._wake()
        return outcome

    async def process_events(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().process_events(*args, **kwargs)
        finally:
            self._wake()  # a worker and a concurrency slot are free again

    @staticmethod
    async def _wait(signal: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(signal.wait(), LOOK_ANYWAY_S)
        except TimeoutError:
            pass

    async def start_processing(self) -> None:
        """Gradio 6.31's `start_processing`, waiting for `_work` where it sleeps `sleep_when_free`."""
        try:
            while not self.stopped:
                self._work.clear()  # before looking: a wake-up during the look is kept for the wait below
                if len(self) == 0 or None not in self.active_jobs:
                    await self._wait(self._work)
                    continue
                async with self.delete_lock:
                    event_batch = self.get_events()
                if event_batch:
                    self._dispatch(*event_batch)
                else:
                    await self._wait(self._work)
        finally:
            self.stopped = True
            self._cancel_asyncio_tasks()

    async def start_progress_updates(self) -> None:
        """Gradio 6.31's `start_progress_updates`, waiting for a job to start where it looks every 10 ms while idle."""
        while not self.stopped:
            events = [evt for job in self.active_jobs if job is not None for evt in job]
            if not events:
                self._job_started.clear()
                await self._wait(self._job_started)
                continue
            for event in events:
                if event.progress_pending and event.progress:
                    event.progress_pending = False
                    self.send_message(event, event.progress)
            await asyncio.sleep(self.progress_update_sleep_when_free)

    def _dispatch(self, events: list, batch: bool, concurrency_id: str) -> None:
        """Start processing `events` on a free worker: Gradio 6.31's loop body, unchanged."""
        self.active_jobs[self.active_jobs.index(None)] = events
        event_queue = self.event_queue_per_concurrency_id[concurrency_id]
        event_queue.current_concurrency += 1
        start_time = time.time()
        fn = events[0].fn
        event_queue.start_times_per_fn[fn].add(start_time)
        for event in events:
            if (a := self.event_analytics.get(event._id)) is not None:
                a["status"] = "processing"
        process_event_task = run_coro_in_background(self.process_events, events, batch, start_time, fn)
        set_task_name(process_event_task, events[0].session_hash, fn._id, events[0]._id, batch)
        self._asyncio_tasks.add(process_event_task)
        process_event_task.add_done_callback(self._asyncio_tasks.discard)
        if self.live_updates:
            self.broadcast_estimations(concurrency_id)
        self._job_started.set()


def install(queue_class: type = WakingQueue) -> None:
    """Make every Gradio app in this process build its queue from `queue_class` (idempotent)."""
    gradio.queueing.Queue = queue_class


def uninstall() -> None:
    """Make Gradio build its queues from its own class again."""
    install(GRADIO_QUEUE)
