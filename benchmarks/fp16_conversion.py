"""Converting BLIP VQA's Linear layers to fp16 weights: torch's `quantize_dynamic` against
`mmdemo.loading.quantize_linear(model, "fp16")` (one pack per layer, on all torch threads), alternating, each on a
freshly loaded model; and whether the converted models give the same logits. Real-size BLIP VQA base, random weights.

    python -m benchmarks.fp16_conversion --repeats 2   # -> benchmarks/results/<tag>/fp16_conversion.md
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import torch

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.run import side_study_parser, write_table

MODEL = "Salesforce/blip-vqa-base"


def main() -> None:
    args = side_study_parser(__doc__, repeats=2).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from torch.ao.quantization import float16_dynamic_qconfig, quantize_dynamic

    from mmdemo.loading import quantize_linear

    path = ensure_bench_models(DEFAULT_ROOT) / MODEL

    def torch_way(model: torch.nn.Module) -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, {torch.nn.Linear: float16_dynamic_qconfig}, dtype=torch.float16,
                                    inplace=True)

    ways = {"torch quantize_dynamic": torch_way, "mmdemo quantize_linear": lambda m: quantize_linear(m, "fp16")}
    times: dict[str, list[float]] = {name: [] for name in ways}
    logits = {}
    pixels = torch.rand(1, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[101, 2054, 2003, 1999, 1996, 3861, 102]])
    for _ in range(args.repeats):
        for name, convert in ways.items():
            model = transformers.BlipForQuestionAnswering.from_pretrained(path, disable_mmap=True).eval()
            started = time.perf_counter()
            convert(model)
            times[name].append(time.perf_counter() - started)
            with torch.inference_mode():
                image = model.vision_model(pixel_values=pixels)[0]
                logits[name] = model.text_encoder(input_ids=ids, encoder_hidden_states=image)[0]
    layers = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    before, after = (statistics.median(times[name]) for name in ways)
    same = torch.equal(*logits.values())
    rows = ["| Linear layers | torch quantize_dynamic (s) | mmdemo quantize_linear (s) | ratio | same outputs |",
            "|---|---|---|---|---|",
            f"| {layers} | {before:.2f} | {after:.2f} | {before / after:.2f} | {str(same).lower()} |"]
    print("\n".join(rows))
    write_table(args.tag, "fp16_conversion",
                f"BLIP VQA base to fp16 weights on {torch.get_num_threads()} threads: median of {args.repeats}", rows)


if __name__ == "__main__":
    main()
