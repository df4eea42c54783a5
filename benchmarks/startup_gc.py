"""Start-up with the garbage collector paused (`python app.py`, see `mmdemo.collector`) against the same app with the
collector running throughout, alternating, beside the bare `import gradio, torch, transformers`.

For each: seconds until `GET /` answers 200 (what `benchmarks.run` reports as start-up), the app's RSS then, and
seconds until the app has also imported every tab's model code in the background (and, when paused, collected,
frozen and resumed): when a first click no longer waits for start-up's work.

    python -m benchmarks.startup_gc --repeats 5   # -> benchmarks/results/<tag>/startup_gc.md
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.harness import REPO, AppProcess
from benchmarks.side_study import log_path, side_study_parser, write_table

# The app as `python app.py` runs it, but with mmdemo.collector.pause made a no-op: the collector runs throughout.
COLLECTOR_RUNNING = ("import runpy, sys; from mmdemo import collector; collector.pause = lambda: None; "
                     "sys.argv = ['app.py', *sys.argv[1:]]; runpy.run_path('app.py', run_name='__main__')")
VARIANTS = {
    "collector paused (app.py)": ([sys.executable, "app.py"], "Garbage collector resumed"),
    "collector running": ([sys.executable, "-c", COLLECTOR_RUNNING], "Imported the model code of every tab"),
}


def main() -> None:
    args = side_study_parser(__doc__, repeats=5).parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("MMDEMO_PRELOAD", None)
    log = log_path(args.tag, "startup_gc-app")
    served: dict[str, list[float]] = {name: [] for name in ["bare import", *VARIANTS]}
    ready: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rss: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.repeats):
        print(f"  round {i + 1}/{args.repeats}", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gradio, torch, transformers"], cwd=REPO, env=env, check=True)
        served["bare import"].append(time.perf_counter() - started)
        for name, (command, ready_line) in VARIANTS.items():
            seconds, ready_seconds, rss_bytes = start_app(command, ready_line, env, log)
            served[name].append(seconds)
            ready[name].append(ready_seconds)
            rss[name].append(rss_bytes / 2**20)
    rows = ["| variant | served (s) | ready for a first click (s) | RSS when served (MiB) | served / bare import |",
            "|---|---|---|---|---|"]
    bare = statistics.median(served["bare import"])
    rows.append(f"| bare import | {bare:.2f} | | | 1.00 |")
    for name in VARIANTS:
        seconds = statistics.median(served[name])
        rows.append(f"| {name} | {seconds:.2f} | {statistics.median(ready[name]):.2f} | "
                    f"{statistics.median(rss[name]):,.0f} | {seconds / bare:.2f} |")
    paused, running = (statistics.median(served[name]) for name in VARIANTS)
    rows += ["", f"Served, paused / running: {paused / running:.2f}"]
    print("\n".join(rows), flush=True)
    write_table(args.tag, "startup_gc", f"Start-up with and without the collector paused: medians of {args.repeats}, "
                "alternating", rows)


def start_app(command: list[str], ready_line: str, env: dict[str, str], log_path: Path) -> tuple[float, float, int]:
    """(seconds to GET / = 200, seconds until `ready_line` is logged, RSS when served) of one launch."""
    app = AppProcess(env, log_path, command)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    try:
        started = time.perf_counter()
        served = app.start()
        rss = psutil.Process(app.proc.pid).memory_info().rss
        while ready_line not in log_path.read_text():
            if app.proc.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"{command} never logged {ready_line!r}; see {log_path}")
            time.sleep(0.05)
        return served, time.perf_counter() - started, rss
    finally:
        app.stop()


if __name__ == "__main__":
    main()
