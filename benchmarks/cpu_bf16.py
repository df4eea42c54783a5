"""Each model as a whole bf16 model against its other CPU format, on a CPU that multiplies bf16 natively.

The evidence behind `CPU_BF16_ARCHITECTURES` in mmdemo/models/formats.py. For each case, two runtimes in this
process: one with the model's format without bf16 (`CPU_DEFAULT_QUANTIZATION`: fp16 weights, int8, or fp32) and one
with `quantize="bf16"`; `Runtime.run` alternates between them call by call. Real-size configs with random weights
(the benchmark models) and the offline pack's real Whisper weights; warm medians and whether the output (answer,
caption, top labels, transcript) is the same.

    python -m benchmarks.cpu_bf16 --repeats 5   # -> benchmarks/results/<tag>/cpu_bf16.md
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

from benchmarks.cases import build_cases, result_output
from benchmarks.side_study import bench_settings, side_study_parser, write_table


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--tasks", nargs="+", default=["vqa", "captioning", "zero_shot", "sentiment", "speech"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmdemo import registry
    from mmdemo.backends import local_runtime
    from mmdemo.models.devices import cpu_computes_bf16
    from mmdemo.models.formats import CPU_DEFAULT_QUANTIZATION
    from mmdemo.models.loading import require_architecture

    if not cpu_computes_bf16():
        raise SystemExit("This CPU has neither AVX512-BF16 nor AMX: bf16 is emulated here, nothing to compare")
    settings = bench_settings(device="cpu")
    rows = ["| case | other format | other (ms) | bf16 (ms) | other / bf16 | same output |",
            "|---|---|---|---|---|---|"]
    for case in build_cases(args.tasks, clips=["jfk.flac", "vosk_dagon.wav"]):
        task = registry.get(case.task)
        other = local_runtime(replace(settings, quantize="none"))
        architecture = require_architecture(other.locator.locate(case.model, None), task.architectures)
        other_format = CPU_DEFAULT_QUANTIZATION.get(architecture) or "none"
        runtimes = {other_format: local_runtime(replace(settings, quantize=other_format)),
                    "bf16": local_runtime(replace(settings, quantize="bf16"))}
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        outputs: dict[str, object] = {}
        for repeat in range(args.repeats + 1):  # the first call of each loads and warms up
            for name, runtime in runtimes.items():
                started = time.perf_counter()
                result = runtime.run(case.task, case.raw)
                if repeat:
                    times[name].append((time.perf_counter() - started) * 1000)
                outputs[name] = result_output(case, result)
        before, after = (statistics.median(times[name]) for name in runtimes)
        same = outputs[other_format] == outputs["bf16"]
        label = {"none": "fp32", "fp16": "fp16 weights"}.get(other_format, other_format)
        rows.append(f"| {case.key} | {label} | {before:,.0f} | {after:,.0f} | {before / after:.2f} | "
                    f"{str(same).lower()} |")
        print(rows[-1], flush=True)
        del runtimes, other
    write_table(args.tag, "cpu_bf16", f"Runtime.run, bf16 model against the other CPU format, warm medians of "
                f"{args.repeats}, alternating", rows)


if __name__ == "__main__":
    main()
