"""A CPU model's first load: its checkpoint read into memory (transformers' `disable_mmap`) against mapped and
copied off the file (`mmdemo.models.loading._off_the_file`), both then converted to the model's CPU format.

What a visitor's first click on a tab waits for, so each load runs in a fresh process, as in a freshly started app
(the model code imported first, as the app does in the background once the page is served); the two ways alternate.
Per way: the seconds from `from_pretrained` to the converted model, the process's RSS after (the model kept, the
collector run) and its peak RSS. The benchmark models (real-size configs, random weights) and the offline pack's
real Whisper weights; every model with a CPU format (`CPU_DEFAULT_QUANTIZATION`), ViLT's included.

    python -m benchmarks.model_load --repeats 3   # -> benchmarks/results/<tag>/model_load.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.harness import REPO
from benchmarks.side_study import bench_settings, side_study_parser, write_table

WAYS = ("read into memory", "mapped, copied off")


def main() -> None:
    parser = side_study_parser(__doc__, repeats=3)
    parser.add_argument("--child", nargs=3, metavar=("WAY", "PATH", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        return load_once(*args.child)
    from mmdemo.models.formats import CPU_DEFAULT_QUANTIZATION
    from mmdemo.models.loading import architecture_of

    paths = sorted(config.parent for config in bench_settings().model_dir.glob("*/*/config.json"))
    cases = [(path, CPU_DEFAULT_QUANTIZATION[architecture_of(path)]) for path in paths
             if architecture_of(path) in CPU_DEFAULT_QUANTIZATION]
    rows = [f"| model | format | seconds: {WAYS[0]} | {WAYS[1]} | ratio | RSS after (MiB): {WAYS[0]} | {WAYS[1]} | "
            f"peak RSS (MiB): {WAYS[0]} | {WAYS[1]} |", "|---|---|---|---|---|---|---|---|---|"]
    for path, fmt in cases:
        runs: dict[str, list[dict]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way in WAYS:
                out = subprocess.run([sys.executable, "-m", "benchmarks.model_load", "--child", way, str(path), fmt],
                                     cwd=REPO, capture_output=True, text=True, check=True).stdout
                runs[way].append(json.loads(out.strip().splitlines()[-1]))
        med = {way: {k: statistics.median(r[k] for r in runs[way]) for k in runs[way][0]} for way in WAYS}
        a, b = (med[way] for way in WAYS)
        rows.append(f"| {path.parent.name}/{path.name} | {fmt} | {a['seconds']:.2f} | {b['seconds']:.2f} | "
                    f"{a['seconds'] / b['seconds']:.2f} | {a['rss_mib']:,.0f} | {b['rss_mib']:,.0f} | "
                    f"{a['peak_mib']:,.0f} | {b['peak_mib']:,.0f} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "model_load", f"First load of each CPU-format model in a fresh process, the two ways "
                f"alternating; medians of {args.repeats}", rows)


def load_once(way: str, path: str, fmt: str) -> None:
    """One load in this (fresh) process; prints its figures as a JSON line."""
    import gc
    import resource
    import time
    from pathlib import Path

    import psutil
    import torch

    from mmdemo.models.loading import _model_class, _off_the_file, architecture_of, quantize_linear

    cls = _model_class(architecture_of(Path(path)))  # the model code, imported before the clock starts
    started = time.perf_counter()
    if way == WAYS[0]:
        model = quantize_linear(cls.from_pretrained(path, dtype=torch.float32, disable_mmap=True).eval(), fmt)
    else:
        model = quantize_linear(_off_the_file(cls.from_pretrained(path, dtype=torch.float32).eval()), fmt)
    seconds = time.perf_counter() - started
    gc.collect()
    print(json.dumps({"seconds": seconds, "rss_mib": psutil.Process().memory_info().rss / 2**20,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    del model


if __name__ == "__main__":
    main()
