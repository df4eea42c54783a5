"""The bare transformers call per vision/text case with each CPU Linear format: fp32, fp16 weights, int8.

The evidence behind `CPU_DEFAULT_QUANTIZATION` in mmdemo/models/formats.py: time per format and whether the output
(answer, caption, top labels) stays the fp32 one. Real-size configs with random weights, as in `benchmarks.run`.

    python -m benchmarks.linear_formats --repeats 3   # -> benchmarks/results/<tag>/linear_formats.md
"""

from __future__ import annotations

import os

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.cases import build_cases
from benchmarks.in_process import InProcess
from benchmarks.side_study import side_study_parser, write_table

FORMATS = (None, "fp16", "int8")


def main() -> None:
    args = side_study_parser(__doc__, repeats=3).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cases = build_cases(["vqa", "captioning", "zero_shot", "sentiment"])
    model_dir = ensure_bench_models(DEFAULT_ROOT, ids={case.model for case in cases})
    bench = InProcess(model_dir, args.repeats, "int8")
    rows = ["| case | fp32 (ms) | fp16 weights | int8 | fp32 / fp16 | fp32 / int8 | same output: fp16, int8 |",
            "|---|---|---|---|---|---|---|"]
    for case in cases:
        print(f"  {case.key}", flush=True)
        found = {kind: bench.bare(case, kind) for kind in FORMATS}
        ms = {kind: m.warm_median for kind, m in found.items()}
        same = [str(found[kind].output == found[None].output).lower() for kind in FORMATS[1:]]
        rows.append(f"| {case.key} | {ms[None]:,.0f} | {ms['fp16']:,.0f} | {ms['int8']:,.0f} | "
                    f"{ms[None] / ms['fp16']:.2f} | {ms[None] / ms['int8']:.2f} | {', '.join(same)} |")
    write_table(args.tag, "linear_formats", "Bare call per CPU Linear format, warm medians", rows)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
