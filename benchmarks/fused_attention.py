"""`mmdemo.models.attention` against transformers' own attention: BLIP captioning's generate().

Captioning: the same call (3 beams, 20 new tokens, fp16 weights as the app runs BLIP on CPU) over 1, 4 and 8
different images, three variants alternating on one loaded model:
- transformers: its own attention and its own cache;
- shared cache: `mmdemo.models.generation.SharedCrossAttentionCache` (the cross-attention half is not copied per step);
- fused attention: plus `mmdemo.models.attention` (fused vision attention; one copy of each image's keys and
  values), the app's path.
and whether their tokens are equal. Real-size BLIP base with random weights, as in `benchmarks.run`, on the device and
in the format the app would use (CPU: fp16 weights; CUDA: bf16 where supported). Images from ../shared/media, or
where that is absent (a lent GPU machine) the repository's assets, mirrored to make up the number.

    python -m benchmarks.fused_attention --repeats 3   # -> benchmarks/results/<tag>/fused_attention.md
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.cases import MEDIA
from benchmarks.harness import REPO
from benchmarks.side_study import side_study_parser, write_table

MODEL = "Salesforce/blip-image-captioning-base"
IMAGES = ("coco_000000039769.png", "darknet_dog.jpg", "merlion.jpg", "darknet_horses.jpg", "darknet_eagle.jpg",
          "darknet_giraffe.jpg", "darknet_person.jpg", "dreambooth_dog_00.jpg")
VARIANTS = ("transformers", "shared cache", "fused attention")


@contextmanager
def transformers_attention(model: torch.nn.Module) -> Iterator[None]:
    """`model` with transformers' own attention classes for the duration (loaded models are fused)."""
    from mmdemo.models.attention import FUSED_CLASSES

    stock = {fused: original for original, fused in FUSED_CLASSES.items()}
    switched = [(module, type(module)) for module in model.modules() if type(module) in stock]
    for module, fused in switched:
        module.__class__ = stock[fused]
    try:
        yield
    finally:
        for module, fused in switched:
            module.__class__ = fused


def bench_images(count: int) -> list:
    """`count` different images: the shared media's, else the assets' and their mirror images."""
    from PIL import ImageOps

    from mmdemo.media import load_image

    paths = [MEDIA / "images" / name for name in IMAGES]
    if not all(path.is_file() for path in paths):
        paths = sorted(p for p in (REPO / "assets").iterdir() if p.suffix in (".png", ".jpg"))
    images = [load_image(str(path)) for path in paths]
    images += [ImageOps.mirror(image) for image in images]
    if len(images) < count:
        raise SystemExit(f"Only {len(images)} different images found for --sizes up to {count}")
    return images[:count]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = side_study_parser(__doc__, repeats=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmdemo.models.devices import dtype_name, resolve_device, resolve_dtype
    from mmdemo.models.formats import CPU_DEFAULT_QUANTIZATION
    from mmdemo.models.generation import SharedCrossAttentionCache
    from mmdemo.models.loading import load_bundle

    device = resolve_device("auto")
    dtype = resolve_dtype(device)
    quantize = CPU_DEFAULT_QUANTIZATION["BlipForConditionalGeneration"] if device == "cpu" else None
    bundle = load_bundle(ensure_bench_models(DEFAULT_ROOT, ids=[MODEL]) / MODEL, device=device, dtype=dtype,
                         allowed=frozenset({"BlipForConditionalGeneration"}), quantize=quantize)
    model = bundle.model
    images = bench_images(max(args.sizes))
    weights = f"{quantize} weights" if quantize else dtype_name(dtype)
    rows = ["| images | transformers (ms) | shared cache (ms) | + fused attention (ms) | shared cache / transformers "
            "| fused / shared cache | fused / transformers | same tokens |", "|---|---|---|---|---|---|---|---|"]

    def run(variant: str, batch: dict, options: dict) -> torch.Tensor:
        if variant == "transformers":
            with transformers_attention(model):
                return model.generate(**batch, **options)
        if variant == "shared cache":
            with transformers_attention(model):
                return model.generate(**batch, **options, cache=SharedCrossAttentionCache())
        return model.generate(**batch, **options, cache=SharedCrossAttentionCache())

    for size in args.sizes:
        pixels = bundle.processor(images=images[:size], return_tensors="pt").pixel_values
        batch = {"pixel_values": pixels.to(device, dtype=dtype)}
        options = {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 20, "do_sample": False}
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        outputs = {}
        with torch.inference_mode():
            for variant in VARIANTS:
                run(variant, batch, {**options, "max_new_tokens": 2})  # warm
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    synchronize(device)
                    started = time.perf_counter()
                    outputs[variant] = run(variant, batch, options)
                    synchronize(device)
                    times[variant].append((time.perf_counter() - started) * 1000)
        stock, shared, fused = (statistics.median(times[variant]) for variant in VARIANTS)
        same = all(torch.equal(outputs["transformers"], outputs[variant]) for variant in VARIANTS)
        rows.append(f"| {size} | {stock:,.0f} | {shared:,.0f} | {fused:,.0f} | {stock / shared:.2f} | "
                    f"{shared / fused:.2f} | {stock / fused:.2f} | {str(same).lower()} |")
        print(rows[-1], flush=True)
    write_table(args.tag, "fused_attention", f"Fused attention: BLIP captioning, 3 beams x 20 tokens, different "
                f"images, {device}, {weights}: warm medians of {args.repeats}", rows)


if __name__ == "__main__":
    main()
