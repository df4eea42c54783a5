"""(a) the app through gradio_client, (b) `Runtime.run` in this process and (c) the bare transformers call, taken in
turns call after call for each case, so that this VM's drift (up to a third over hours) falls on all three alike.

`benchmarks.run` measures the app, then the in-process variants, minutes apart; this side study answers one
question: what the app adds over the same work, measured at the same time. The app runs `python app.py` on the
benchmark models (as `benchmarks.run` does); (c) gets the same Linear format as the app.

    python -m benchmarks.interleaved --repeats 5   # -> benchmarks/results/<tag>/interleaved.md
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.run import (
    REPO,
    AppProcess,
    InProcess,
    app_env,
    bare_call,
    build_cases,
    build_parser,
    client_args,
    side_study_parser,
    write_table,
)


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--tasks", nargs="+", default=["vqa", "captioning", "zero_shot", "sentiment"],
                        help="tasks or case keys, as benchmarks.run --tasks")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from gradio_client import Client

    model_dir = ensure_bench_models(DEFAULT_ROOT)
    case_args = build_parser().parse_args(["--tasks", *args.tasks])
    case_args.caption_tokens = 20
    cases = [case for case in build_cases(case_args) if case.task != "speech"]
    bench = InProcess(model_dir, args.repeats, "int8")
    log = REPO / "benchmarks" / "results" / args.tag / "interleaved-app.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    app = AppProcess(app_env(dict(os.environ), model_dir, {}), log)
    app.start()
    rows = ["| case | (a) app | (a) predict | (b) runtime | (c) bare | (a)/(c) | (a)/(b) | (a) predict / (b) |",
            "|---|---|---|---|---|---|---|---|"]
    try:
        client = Client(app.url, verbose=False, ssl_verify=False)
        for case in cases:
            print(f"  {case.key}", flush=True)
            model, processor = bench.load_model(case.model, bench.runtime_quantization(case))
            inputs = bench.decoded_inputs(case)
            predict_ms: list[float] = []

            def app_call(case=case, predict_ms=predict_ms) -> Any:
                result = client.predict(*client_args(case), api_name=case.api_name)
                predict_ms.append(result["provenance"]["ms"])

            def bare(case=case, model=model, processor=processor, inputs=inputs) -> Any:
                with torch.inference_mode():
                    return bare_call(case)(model, processor, inputs, case, bench)

            calls = {"a": app_call, "b": lambda case=case: bench.runtime.run(case.task, case.raw), "c": bare}
            for call in calls.values():  # loads and first calls
                call(), call()
            predict_ms.clear()
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.repeats):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - started) * 1000)
            ms = {name: statistics.median(values) for name, values in times.items()}
            predicted = statistics.median(predict_ms)
            rows.append(f"| {case.key} | {ms['a']:,.0f} | {predicted:,.0f} | {ms['b']:,.0f} | {ms['c']:,.0f} | "
                        f"{ms['a'] / ms['c']:.2f} | {ms['a'] / ms['b']:.2f} | {predicted / ms['b']:.2f} |")
            print(rows[-1], flush=True)
            del model, processor
            bench.release()
    finally:
        app.stop()
    write_table(args.tag, "interleaved", f"(a), (b), (c) in turns, warm medians of {args.repeats}", rows)


if __name__ == "__main__":
    main()
