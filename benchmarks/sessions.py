"""What a Gradio session costs this app: Gradio's own `SessionState` against
`mmdemo.ui.gradio_patches.sessions.LazySessionState`.

A session starts at a visitor's first event, and for every API call that sends no session hash (curl, fetch). For
each class: the CPU time and memory to start one session of this app, and the round trip of a plain-HTTP call of
`/models` (no model work) without a session hash, the two classes alternating against one launched app.

    python -m benchmarks.sessions --repeats 50   # -> benchmarks/results/<tag>/sessions.md
"""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc

from benchmarks.harness import HttpClient, free_port
from benchmarks.side_study import side_study_parser, write_table


def main() -> None:
    args = side_study_parser(__doc__, repeats=50).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mmdemo.tasks  # noqa: F401
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings
    from mmdemo.ui import build_demo
    from mmdemo.ui.gradio_patches import sessions

    demo = build_demo(local_runtime(Settings(device="cpu")))
    classes = {"Gradio's SessionState": sessions.GRADIO_SESSION_STATE, "LazySessionState": sessions.LazySessionState}
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    http = HttpClient(f"http://127.0.0.1:{port}")
    try:
        start_ms: dict[str, list[float]] = {name: [] for name in classes}
        call_ms: dict[str, list[float]] = {name: [] for name in classes}
        kept_bytes = {}
        for name, cls in classes.items():
            sessions.install(cls)
            http.predict(api_name="/models")  # warm
            tracemalloc.start()
            kept = [cls(demo) for _ in range(20)]
            kept_bytes[name] = tracemalloc.get_traced_memory()[0] / len(kept)
            tracemalloc.stop()
        for _ in range(args.repeats):
            for name, cls in classes.items():
                started = time.process_time()
                cls(demo)
                start_ms[name].append((time.process_time() - started) * 1000)
                sessions.install(cls)
                started = time.perf_counter()
                http.predict(api_name="/models")
                call_ms[name].append((time.perf_counter() - started) * 1000)
    finally:
        sessions.install()
        demo.close()
    rows = ["| session class | start a session: CPU (ms) | memory per session (KB) | /models over HTTP, no session "
            "hash (ms) |", "|---|---|---|---|"]
    for name in classes:
        rows.append(f"| {name} | {statistics.median(start_ms[name]):.2f} | {kept_bytes[name] / 1024:,.0f} | "
                    f"{statistics.median(call_ms[name]):.1f} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "sessions", f"A Gradio session of this app ({len(demo.blocks)} blocks): medians of "
                f"{args.repeats}, the two classes alternating", rows)


if __name__ == "__main__":
    main()
