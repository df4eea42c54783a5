"""CPU model calls on the threads that serve requests against each on a thread of its own
(`mmdemo.runtime.model_threads`).

A web server hands each request to whichever of its worker threads is free; each of those that ever ran a parallel
region keeps an OpenMP team, and with more such threads than CPUs libgomp stops letting any team spin. Each arm runs
in a fresh process: a pool of `--servers` persistent threads takes the requests in turn, one request at a time, as
the app's server does under sequential traffic; in the "serving threads" arm `LocalPredictor.on_model_thread` is
replaced by a plain call (the behaviour before). The processes alternate; per case, the median over the repeats of
each process's warm median. The benchmark models (real-size configs, random weights) and the offline pack's Whisper.

    python -m benchmarks.model_threads --repeats 3   # -> benchmarks/results/<tag>/model_threads.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.harness import REPO
from benchmarks.side_study import side_study_parser, write_table

ARMS = ("serving threads", "own threads")
TASKS = ["vqa", "captioning", "zero_shot/clip", "sentiment", "speech/whisper-tiny.en/jfk"]


def main() -> None:
    parser = side_study_parser(__doc__, repeats=3)
    parser.add_argument("--servers", type=int, default=4, help="the server's worker threads")
    parser.add_argument("--calls", type=int, default=5, help="warm calls per case in each process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        return serve(args.child, args.servers, args.calls)
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for _ in range(args.repeats):
        for arm in ARMS:
            out = subprocess.run([sys.executable, "-m", "benchmarks.model_threads", "--child", arm, "--servers",
                                  str(args.servers), "--calls", str(args.calls)],
                                 cwd=REPO, capture_output=True, text=True, check=True).stdout
            runs[arm].append(json.loads(out.strip().splitlines()[-1]))
            print(arm, runs[arm][-1], flush=True)
    rows = [f"| case | {ARMS[0]} (ms) | {ARMS[1]} (ms) | ratio |", "|---|---|---|---|"]
    for case in runs[ARMS[0]][0]:
        before, after = (statistics.median(run[case] for run in runs[arm]) for arm in ARMS)
        rows.append(f"| {case} | {before:,.1f} | {after:,.1f} | {before / after:.2f} |")
    print("\n".join(rows))
    write_table(args.tag, "model_threads", f"Runtime.run from a pool of {args.servers} threads taking turns, model "
                f"calls on those threads vs on threads of their own; medians of {args.repeats} processes each", rows)


def serve(arm: str, servers: int, calls: int) -> None:
    """One arm in this process: every case through a pool of `servers` threads in turn; warm medians as JSON."""
    import queue
    import threading
    import time

    from benchmarks.cases import build_cases
    from benchmarks.side_study import bench_settings
    from mmdemo.backends import local_runtime
    from mmdemo.runtime.local import LocalPredictor

    if arm == ARMS[0]:
        LocalPredictor.on_model_thread = lambda self, fn, *args: fn(*args)
    cases = build_cases(TASKS)
    runtime = local_runtime(bench_settings({case.model for case in cases}))
    requests: queue.Queue = queue.Queue()

    def server() -> None:
        while True:
            call, done = requests.get()
            done.put(call())

    for _ in range(servers):
        threading.Thread(target=server, daemon=True).start()
    medians = {}
    for case in cases:
        times = []
        for i in range(calls + 2):  # the first loads the model, the second warms it
            done: queue.Queue = queue.Queue()
            started = time.perf_counter()
            requests.put((lambda case=case: runtime.run(case.task, case.raw), done))
            done.get()
            if i >= 2:
                times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)  # the server that served it goes back to waiting: the next one may be another
        medians[case.key] = statistics.median(times)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
