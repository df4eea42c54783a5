"""BLIP captioning's beam search with transformers' own cache and with `mmdemo.generation.SharedCrossAttentionCache`.

The same generate() call (3 beams, 20 new tokens, fp16 weights as the app runs BLIP on CPU) over 1, 4 and 8 images,
the two caches alternating, and whether their tokens are equal. Real-size BLIP base with random weights, as in
`benchmarks.run`.

    python -m benchmarks.beam_cache --repeats 3   # -> benchmarks/results/<tag>/beam_cache.md
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.run import MEDIA, side_study_parser, write_table

MODEL = "Salesforce/blip-image-captioning-base"
IMAGES = ("coco_000000039769.png", "darknet_dog.jpg", "merlion.jpg", "darknet_horses.jpg", "darknet_eagle.jpg",
          "darknet_giraffe.jpg", "darknet_person.jpg", "dreambooth_dog_00.jpg")


def main() -> None:
    parser = side_study_parser(__doc__, repeats=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmdemo.generation import SharedCrossAttentionCache
    from mmdemo.loading import load_bundle
    from mmdemo.media import load_image

    bundle = load_bundle(ensure_bench_models(DEFAULT_ROOT) / MODEL, device="cpu", dtype=torch.float32,
                         allowed=frozenset({"BlipForConditionalGeneration"}), quantize="fp16")
    images = [load_image(str(MEDIA / "images" / name)) for name in IMAGES]
    rows = ["| images | transformers' cache (ms) | shared cross-attention cache (ms) | ratio | same tokens |",
            "|---|---|---|---|---|"]
    for size in args.sizes:
        batch = bundle.processor(images=images[:size], return_tensors="pt")
        options = {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 20, "do_sample": False}
        times: dict[str, list[float]] = {"default": [], "shared": []}
        outputs = {}
        with torch.inference_mode():
            bundle.model.generate(**batch, **{**options, "max_new_tokens": 2})  # warm
            for _ in range(args.repeats):
                for name in times:
                    extra = {"cache": SharedCrossAttentionCache()} if name == "shared" else {}
                    started = time.perf_counter()
                    outputs[name] = bundle.model.generate(**batch, **options, **extra)
                    times[name].append((time.perf_counter() - started) * 1000)
        default, shared = statistics.median(times["default"]), statistics.median(times["shared"])
        same = torch.equal(outputs["default"], outputs["shared"])
        rows.append(f"| {size} | {default:,.0f} | {shared:,.0f} | {default / shared:.2f} | {str(same).lower()} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "beam_cache", f"BLIP captioning, 3 beams x 20 tokens, fp16 weights: warm medians of "
                f"{args.repeats}", rows)


if __name__ == "__main__":
    main()
