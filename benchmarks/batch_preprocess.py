"""Where a batch's images are preprocessed: one after another inside `predict_batch`, or each in its own request's
thread before the batch (`Task.preprocess`, what the runtime does).

Zero-shot classification, 8 threads each sending its own image (5 labels, CLIP B/32 and SigLIP base, real size with
random weights) through `Runtime.run` in this process, batched as the app batches; the two ways alternate round by
round on one runtime, and every result is checked equal between them. Requests per second, median over rounds.

    python -m benchmarks.batch_preprocess --repeats 5   # -> benchmarks/results/<tag>/batch_preprocess.md
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from benchmarks.cases import LABELS, TEMPLATE
from benchmarks.fused_attention import bench_images
from benchmarks.side_study import bench_folder, bench_settings, side_study_parser, write_table

MODELS = ("openai/clip-vit-base-patch32", "google/siglip-base-patch16-224")
WAYS = ("in predict_batch", "in each request's thread")


def run_round(runtime, raws: list[dict], requests: int) -> tuple[float, list[dict]]:
    """One client thread per request in `raws`, each sending it `requests` times: requests/s and the results."""
    results: list = [None] * (len(raws) * requests)
    barrier = threading.Barrier(len(raws))

    def client(index: int) -> None:
        barrier.wait()
        for turn in range(requests):
            results[index * requests + turn] = runtime.run("zero_shot", raws[index])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(raws))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(results) / (time.perf_counter() - started), results


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="requests per client per round")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmdemo.backends import local_runtime
    from mmdemo.models.devices import resolve_device
    from mmdemo.tasks.base import Task
    from mmdemo.tasks.zero_shot import ZeroShotTask

    runtime_settings = bench_settings(MODELS)
    runtime = local_runtime(runtime_settings)
    folder = bench_folder("batch-preprocess-images")
    paths = []
    for index, image in enumerate(bench_images(args.clients)):
        paths.append(folder / f"client{index}.png")
        image.save(paths[-1])
    preprocess = ZeroShotTask.preprocess
    rows = [f"| model | {WAYS[0]} (requests/s) | {WAYS[1]} (requests/s) | ratio | median batch | same results |",
            "|---|---|---|---|---|---|"]
    for model in MODELS:
        raws = [{"image": str(path), "labels": ", ".join(LABELS), "model": model, "template": TEMPLATE}
                for path in paths]
        runtime.run("zero_shot", raws[0])  # load
        rates: dict[str, list[float]] = {way: [] for way in WAYS}
        outputs: dict[str, list] = {}
        sizes: list[int] = []
        try:
            for repeat in range(args.repeats + 1):  # the first round of each way warms up
                for way in WAYS:
                    ZeroShotTask.preprocess = Task.preprocess if way == WAYS[0] else preprocess
                    rate, results = run_round(runtime, raws, args.requests)
                    outputs[way] = [[(x["label"], round(x["score"], 4)) for x in r["labels"]] for r in results]
                    if repeat:
                        rates[way].append(rate)
                        sizes += [r["provenance"]["batch_size"] for r in results]
        finally:
            ZeroShotTask.preprocess = preprocess
        before, after = (statistics.median(rates[way]) for way in WAYS)
        same = outputs[WAYS[0]] == outputs[WAYS[1]]
        rows.append(f"| {model} | {before:.2f} | {after:.2f} | {after / before:.2f} | {statistics.median(sizes):g} "
                    f"| {str(same).lower()} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "batch_preprocess", f"Zero-shot, {args.clients} threads x {args.requests} requests, "
                f"{resolve_device(runtime_settings.device)}: requests/s, median of {args.repeats} rounds", rows)


if __name__ == "__main__":
    main()
