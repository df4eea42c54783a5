"""WakingQueue: Gradio's queue whose loops wait for requests and jobs instead of looking every few milliseconds."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import gradio.queueing
import pytest
from gradio_client import Client

import mmdemo.tasks  # noqa: F401
from mmdemo.ui import build_demo
from mmdemo.ui.gradio_patches import queueing
from mmdemo.ui.gradio_patches.queueing import GRADIO_QUEUE, WakingQueue

# Gradio 6.31's loops, which WakingQueue's follow line by line apart from their waits. Another Gradio fails here:
# reread its `Queue.start_processing` and `Queue.start_progress_updates`, carry the change over, then update these.
GRADIO_LOOPS_SHA256 = {
    "start_processing": "d65be5a5cbed97d75e13233ab7d0dfc9f347c4ffd33bdcb47293d696f38aaa1f",
    "start_progress_updates": "7cbbec1cf932324cd2fc80791130a2cf1ad7d31e42aead9798abc4e51d9e2823",
}


def test_building_the_app_gives_it_a_waking_queue(tiny_runtime):
    demo = build_demo(tiny_runtime())
    assert type(demo._queue) is WakingQueue
    assert GRADIO_QUEUE is not WakingQueue and GRADIO_QUEUE.__module__ == "gradio.queueing"


@pytest.mark.parametrize("loop", sorted(GRADIO_LOOPS_SHA256))
def test_gradios_loops_are_the_ones_waking_queue_follows(loop):
    source = inspect.getsource(getattr(GRADIO_QUEUE, loop))
    assert hashlib.sha256(source.encode()).hexdigest() == GRADIO_LOOPS_SHA256[loop], (
        f"Gradio's Queue.{loop} changed (gradio {gr.__version__}): compare it with WakingQueue.{loop}")


def counting(queue_class: type) -> type:
    """`queue_class`, counting its loops' looks: the dispatcher's at the queue's length, the progress sender's at
    the running jobs (while idle, nothing else reads either)."""

    class Counting(queue_class):
        looks: Counter

        def __len__(self) -> int:
            self.looks["dispatcher"] += 1
            return super().__len__()

        @property
        def active_jobs(self) -> list:
            self.looks["progress sender"] += 1
            return self._jobs

        @active_jobs.setter
        def active_jobs(self, jobs: list) -> None:
            self._jobs = jobs

    return Counting


def idle_looks(queue_class: type, seconds: float = 1.0) -> Counter:
    """How often the loops of an idle `queue_class` look for work in `seconds`."""
    with gr.Blocks() as blocks:
        gr.Textbox().submit(str.upper, gr.Textbox(), gr.Textbox())
    queue = counting(queue_class)(live_updates=True, concurrency_count=2, update_intervals=1, max_size=None,
                                  blocks=blocks, default_concurrency_limit=1)
    queue.looks = Counter()

    async def idle() -> None:
        queue.start()
        await asyncio.sleep(seconds)
        looks = Counter(queue.looks)
        queue.close()
        await asyncio.sleep(queueing.LOOK_ANYWAY_S + 0.1)  # the loops see `stopped` and end
        queue.looks = looks

    asyncio.run(idle())
    return queue.looks


def test_an_idle_queue_looks_a_few_times_a_second_where_gradios_looks_hundreds():
    gradios, waking = idle_looks(GRADIO_QUEUE), idle_looks(WakingQueue)
    assert gradios["dispatcher"] > 100 and gradios["progress sender"] > 20  # every 1 ms and 10 ms
    guard_looks = 1 / queueing.LOOK_ANYWAY_S + 2
    assert waking["dispatcher"] <= guard_looks and waking["progress sender"] <= guard_looks, waking


def progress_shown(job) -> set[str]:
    """The progress descriptions a job's client received."""
    updates, shown = job.communicator.updates, set()
    while not updates.empty():
        update = updates.get_nowait()
        shown.update(unit.desc for unit in getattr(update, "progress_data", None) or [])
    return shown


def test_requests_and_progress_go_through_at_once_without_the_guard(monkeypatch, launched):
    """With the guard at a minute, only the wake-ups can move the queue: a request joining, a job ending (the
    next waiting request starts: one at a time here), a job starting (its progress reaches the client)."""
    monkeypatch.setattr(queueing, "LOOK_ANYWAY_S", 60.0)
    monkeypatch.setattr(gradio.queueing, "Queue", WakingQueue)  # what install() does, undone after the test

    def shout(text: str, progress: gr.Progress = gr.Progress()) -> str:
        progress(0.5, desc=f"shouting {text}")
        time.sleep(0.3)  # long enough for the progress sender's 10 ms look
        return text.upper()

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(shout, box, box, api_name="shout", concurrency_limit=1)
    demo.queue()
    assert type(demo._queue) is WakingQueue
    client = Client(launched(demo), verbose=False)
    words = ["one", "two", "three", "four"]
    with ThreadPoolExecutor(len(words)) as pool:
        jobs = list(pool.map(lambda word: client.submit(word, api_name="/shout"), words))
        # 4 x 0.3 s one after another; without the wake-ups each would wait for the minute's guard
        answers = [job.result(timeout=20) for job in jobs]
    assert answers == ["ONE", "TWO", "THREE", "FOUR"]
    assert set().union(*map(progress_shown, jobs)) == {f"shouting {word}" for word in words}
