"""What Gradio's queue looks cost the app: `WakingQueue` (mmdemo/ui/gradio_patches/queueing.py) with and without
them.

Gradio's dispatcher looks at its queue every `sleep_when_free` (1 ms on Linux) and its progress sender at the
running jobs every 10 ms, on the server's event loop, busy or idle; `WakingQueue` waits for a request, a job's end or
start. To compare them call by call on one launched app, the app runs `LookingQueue`: `WakingQueue` plus two
coroutines on the same event loop that, while `looking` is set, do what Gradio's loops do with nothing to do, at
their cadence (while a job runs, both arms' progress senders look every 10 ms). The rounds alternate between
looking and not: each case called over plain HTTP (`HttpClient`: no polling client in the process), end to end and
the app's own predict time (the result's provenance); then the process's CPU over `--idle-seconds` with nobody
calling. The benchmark models, loaded once; the first round warms up and is not counted.

    python -m benchmarks.queue_wakeup --repeats 7   # -> benchmarks/results/<tag>/queue_wakeup.md
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable

from benchmarks.cases import build_cases
from benchmarks.harness import HttpClient
from benchmarks.side_study import bench_settings, side_study_parser, write_table

ARMS = {"Gradio's looks": True, "WakingQueue": False}
TOGGLE_S = 0.25  # longer than the look coroutine's wait when off, so a toggle has taken effect


def main() -> None:
    parser = side_study_parser(__doc__, repeats=7)
    parser.add_argument("--tasks", nargs="+", default=["vqa", "captioning", "zero_shot", "sentiment"])
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil

    from mmdemo.backends import local_runtime
    from mmdemo.ui import build_demo
    from mmdemo.ui.gradio_patches import queueing

    cases = build_cases(args.tasks)
    settings = bench_settings({case.model for case in cases})
    runtime = local_runtime(settings)
    demo = build_demo(runtime)  # installs WakingQueue; the queue is rebuilt from LookingQueue below
    queueing.install(looking_queue_class(queueing.WakingQueue))
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    demo.launch(prevent_thread_lock=True, quiet=True)
    queue, http, process = demo._queue, HttpClient(demo.local_url), psutil.Process()
    e2e = {(arm, case.key): [] for arm in ARMS for case in cases}
    predict = {(arm, case.key): [] for arm in ARMS for case in cases}
    idle: dict[str, list[float]] = {arm: [] for arm in ARMS}
    try:
        for repeat in range(args.repeats + 1):
            for case in cases:
                for arm, looking in ARMS.items():
                    queue.looking = looking
                    time.sleep(TOGGLE_S)
                    started = time.perf_counter()
                    result = http.predict(*case.api_args, api_name=case.api_name)
                    if repeat:
                        e2e[arm, case.key].append((time.perf_counter() - started) * 1000)
                        predict[arm, case.key].append(result["provenance"]["ms"])
            for arm, looking in ARMS.items():
                queue.looking = looking
                time.sleep(TOGGLE_S)
                before, started = process.cpu_times(), time.perf_counter()
                time.sleep(args.idle_seconds)
                after, elapsed = process.cpu_times(), time.perf_counter() - started
                if repeat:
                    idle[arm].append(100 * (after.user + after.system - before.user - before.system) / elapsed)
            print(f"round {repeat} done", flush=True)
    finally:
        demo.close()
    gradio, waking = ARMS
    rows = [f"| case | end to end: {gradio} (ms) | {waking} (ms) | ratio | app predict: {gradio} (ms) | "
            f"{waking} (ms) | ratio |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        a, b = (statistics.median(e2e[arm, case.key]) for arm in ARMS)
        p, q = (statistics.median(predict[arm, case.key]) for arm in ARMS)
        rows.append(f"| {case.key} | {a:,.1f} | {b:,.1f} | {a / b:.3f} | {p:,.1f} | {q:,.1f} | {p / q:.3f} |")
    rows += ["", f"Idle process CPU, % of one core (median of {args.repeats} x {args.idle_seconds:g} s): "
             f"{gradio} {statistics.median(idle[gradio]):.2f}, {waking} {statistics.median(idle[waking]):.2f}"]
    print("\n".join(rows), flush=True)
    write_table(args.tag, "queue_wakeup", f"WakingQueue with and without Gradio's idle looks, alternating call by "
                f"call on one app over plain HTTP; warm medians of {args.repeats}", rows)


def looking_queue_class(base: type) -> type:
    """`base` plus Gradio's two idle looks on the server's event loop while `looking` is set."""
    from gradio.utils import run_coro_in_background

    class LookingQueue(base):
        looking = False

        def start(self) -> None:
            super().start()
            run_coro_in_background(self._look, self.sleep_when_free, lambda: True)  # the dispatcher: always
            # the progress sender while no job runs (then WakingQueue's own looks every 10 ms, as Gradio's does)
            run_coro_in_background(self._look, self.progress_update_sleep_when_free,
                                   lambda: not [e for job in self.active_jobs if job is not None for e in job])

        async def _look(self, period: float, when: Callable[[], bool]) -> None:
            while not self.stopped:
                if self.looking:
                    when() and len(self)  # what Gradio's loop does with nothing to do, at its cadence
                    await asyncio.sleep(period)
                else:
                    await asyncio.sleep(TOGGLE_S / 2)

    return LookingQueue


if __name__ == "__main__":
    main()
