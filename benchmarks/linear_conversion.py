"""Converting a model's Linear layers to its CPU format: torch's `quantize_dynamic` against
`mmdemo.models.loading.quantize_linear` (one pack per layer, on all torch threads), alternating, each on a freshly
loaded model (mapped and copied off the file, as the app loads it); and whether the converted models give the same
outputs.
BLIP VQA base to fp16 weights (real size, random weights); the offline pack's Whisper base and tiny.en to int8.

    python -m benchmarks.linear_conversion --repeats 3   # -> benchmarks/results/<tag>/linear_conversion.md
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.side_study import side_study_parser, write_table

CASES = [("Salesforce/blip-vqa-base", "fp16"), ("openai/whisper-base", "int8"), ("openai/whisper-tiny.en", "int8")]


def main() -> None:
    args = side_study_parser(__doc__, repeats=3).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    from mmdemo.models.loading import _int8_linear_class, _off_the_file, architecture_of, quantize_linear

    def torch_way(kind: str) -> Callable[[torch.nn.Module], torch.nn.Module]:
        qconfig, dtype = (float16_dynamic_qconfig, torch.float16) if kind == "fp16" else \
            (per_channel_dynamic_qconfig, torch.qint8)
        mapping = {torch.nn.Linear: _int8_linear_class()} if kind == "int8" else None  # the app's int8 layer

        def convert(model: torch.nn.Module) -> torch.nn.Module:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=dtype, mapping=mapping, inplace=True)

        return convert

    rows = ["| model | format | Linear layers | torch quantize_dynamic (s) | mmdemo quantize_linear (s) | ratio | "
            "same outputs |", "|---|---|---|---|---|---|---|"]
    models = ensure_bench_models(DEFAULT_ROOT, ids=[model_id for model_id, _ in CASES])
    for model_id, kind in CASES:
        path = models / model_id
        cls = getattr(transformers, architecture_of(path))
        ways = {"torch": torch_way(kind), "mmdemo": lambda m, kind=kind: quantize_linear(m, kind)}
        times: dict[str, list[float]] = {name: [] for name in ways}
        outputs = {}
        for _ in range(args.repeats):
            for name, convert in ways.items():
                model = _off_the_file(cls.from_pretrained(path).eval())
                started = time.perf_counter()
                convert(model)
                times[name].append(time.perf_counter() - started)
                with torch.inference_mode():
                    outputs[name] = probe(model)
        layers = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
        before, after = (statistics.median(times[name]) for name in ways)
        same = torch.equal(*outputs.values())
        rows.append(f"| {model_id} | {kind} | {layers} | {before:.2f} | {after:.2f} | {before / after:.2f} | "
                    f"{str(same).lower()} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "linear_conversion", f"Linear layers to the CPU format on {torch.get_num_threads()} "
                f"threads: medians of {args.repeats}, alternating", rows)


def probe(model: torch.nn.Module) -> torch.Tensor:
    """The model's outputs on fixed inputs: BLIP VQA's question encoding, Whisper's first decoder logits."""
    generator = torch.Generator().manual_seed(0)
    if hasattr(model, "vision_model"):
        pixels = torch.rand(1, 3, 384, 384, generator=generator)
        image = model.vision_model(pixel_values=pixels)[0]
        ids = torch.tensor([[101, 2054, 2003, 1999, 1996, 3861, 102]])
        return model.text_encoder(input_ids=ids, encoder_hidden_states=image)[0]
    features = torch.rand(1, model.config.num_mel_bins, 3000, generator=generator)
    start = torch.tensor([[model.config.decoder_start_token_id]])
    return model(input_features=features, decoder_input_ids=start).logits


if __name__ == "__main__":
    main()
