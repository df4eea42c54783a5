"""GPU check for the core app: every task on CUDA in bf16/fp16, and eviction really frees GPU memory.

Run on a machine with a GPU (no hub needed): `python -m benchmarks.gpu_check [--out results.json]`.
Builds the tiny test checkpoints, runs each task through the Runtime with auto device/dtype, then loads a
real-size CLIP ViT-B/32 (random weights) to show the cache's accounting against torch's allocator.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from benchmarks.harness import REPO

ASSETS = REPO / "assets"
REQUESTS = [
    ("vqa", {"image": str(ASSETS / "skimage_chelsea.png"), "question": "what is this?"}),
    ("vqa", {"image": str(ASSETS / "skimage_chelsea.png"), "question": "what is this?",
             "model": "dandelin/vilt-b32-finetuned-vqa"}),
    ("captioning", {"image": str(ASSETS / "skimage_coffee.png"), "num_captions": 2}),
    ("captioning", {"image": str(ASSETS / "skimage_coffee.png"), "model": "microsoft/git-base-coco",
                    "prefix": "a photo of"}),
    ("captioning", {"image": str(ASSETS / "skimage_coffee.png"), "model": "nlpconnect/vit-gpt2-image-captioning",
                    "mode": "sample", "seed": 3}),
    ("zero_shot", {"image": str(ASSETS / "skimage_chelsea.png"), "labels": "cat, dog, bird", "ensemble": True}),
    ("zero_shot", {"image": str(ASSETS / "skimage_chelsea.png"), "labels": "cat, dog",
                   "model": "google/siglip-base-patch16-224"}),
    ("speech", {"audio": str(ASSETS / "jfk.flac"), "timestamps": "segment"}),
    ("speech", {"audio": str(ASSETS / "jfk.flac"), "timestamps": "word"}),
]


def mib(n: int) -> float:
    return round(n / 2**20, 1)


def _real_image_size(path: Path, side: int) -> None:
    """Point the copied tiny image processor at the real model's input size."""
    for config in path.glob("*.json"):
        data = json.loads(config.read_text())
        holders = [data, data.get("image_processor", {})]
        for holder in holders:
            if "crop_size" in holder:
                holder["crop_size"] = {"height": side, "width": side}
                holder["size"] = {"shortest_edge": side}
        config.write_text(json.dumps(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    import mmdemo.tasks  # noqa: F401
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings
    from mmdemo.testing.tiny_models import ensure_tiny_models

    cuda = torch.cuda.is_available()
    allocated = torch.cuda.memory_allocated if cuda else (lambda: 0)
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if cuda else "none"}
    root = ensure_tiny_models(Path("/tmp/mmdemo-tiny"))
    runtime = local_runtime(Settings(model_dir=root))
    predictor = runtime.predictor
    report["auto"] = {"device": predictor.device, "dtype": str(predictor.dtype),
                      "budget_mib": mib(predictor.cache.budget_bytes),
                      "free_mib": mib(torch.cuda.mem_get_info()[0]) if cuda else None}
    runs = []
    for name, raw in REQUESTS:
        started = time.perf_counter()
        try:
            result = runtime.run(name, raw)
            runs.append({"task": name, "model": result["provenance"]["models"]["model"],
                         "device": result["provenance"]["device"], "dtype": result["provenance"]["dtype"],
                         "ms": result["provenance"]["ms"], "wall_ms": round((time.perf_counter() - started) * 1e3, 1),
                         "ok": True})
        except Exception as e:  # report every failure, keep going
            runs.append({"task": name, "model": raw.get("model"), "ok": False, "error": f"{type(e).__name__}: {e}"})
    report["runs"] = runs
    for entry in runtime.cache_report()["entries"][:1]:
        report["param_device_example"] = entry

    # fp16 explicitly, one task.
    fp16 = local_runtime(Settings(model_dir=root, dtype="float16"))
    result = fp16.run("zero_shot", {"image": str(ASSETS / "skimage_chelsea.png"), "labels": "cat, dog"})
    report["fp16_zero_shot"] = {"dtype": result["provenance"]["dtype"],
                                "sum": sum(x["score"] for x in result["labels"])}

    # Real-size CLIP ViT-B/32, random weights: cache bytes vs allocator, and eviction frees it.
    import transformers

    big_root = Path("/tmp/mmdemo-big")
    target = big_root / "openai" / "clip-vit-base-patch32"
    if not target.exists():
        model = transformers.CLIPModel(transformers.CLIPConfig())
        model.save_pretrained(target)
        for f in (root / "openai" / "clip-vit-base-patch32").iterdir():
            if f.name not in {"config.json", "model.safetensors"} and not f.name.startswith("."):
                shutil.copy(f, target / f.name)
        _real_image_size(target, 224)
        del model
    big = local_runtime(Settings(model_dir=big_root, memory_budget=2 * 2**30))
    baseline = allocated()
    started = time.perf_counter()
    big.preload("zero_shot")
    loaded = allocated()
    entry = big.cache_report()["entries"][0]
    result = big.run("zero_shot", {"image": str(ASSETS / "skimage_chelsea.png"), "labels": "cat, dog"})
    big.unload("openai/clip-vit-base-patch32")
    after = allocated()
    report["eviction"] = {
        "load_s": round(time.perf_counter() - started, 2), "cache_entry_mib": mib(entry["bytes"]),
        "dtype": entry["dtype"], "allocated_before_mib": mib(baseline), "allocated_loaded_mib": mib(loaded),
        "allocated_after_unload_mib": mib(after),
        "reserved_after_unload_mib": mib(torch.cuda.memory_reserved()) if cuda else None,
        "run_ms": result["provenance"]["ms"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
