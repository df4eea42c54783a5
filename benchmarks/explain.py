"""What `explain` costs, and whether its maps point at what the model used.

Cost: each explained request against the same request without it, on the real-size random-weight checkpoints
(`benchmarks.bench_models`: BLIP base, CLIP B/32, SigLIP base, ViLT B/32, RoBERTa base) through `Runtime.run`, in the
app's CPU formats. The two calls alternate, after a warm-up; the ratio is of the medians.

Deletion: for zero-shot and VQA, the image's most relevant 20 % of patches (by the map) are painted grey, then a
random 20 %, and the explained score (the label's logit, the answer's logit or log-likelihood) is computed again;
a faithful map lowers it more. Also the deletion curve (0-50 % of the patches, by map and at random) and the area
under each, averaged over the shared images. Random weights: the maps explain what these models compute, which is
all a faithfulness test needs. GIT (captioning) has no real-size checkpoint in the benchmark set.

Sentiment deletion: on the shared SST-2 sentences, the 1, 2, 3 words with the highest attribution are deleted, by
the app's gradient × input and by occlusion, against as many random words (mean of 5 draws), and the verdict's
probability scored again through the runtime; also how often the two methods agree on the top word and their rank
correlation. The sentences' labels are not used: with random weights the verdict is what is explained.

    python -m benchmarks.explain [--repeats 5] [--images 8] [--sentences 40] [--skip-deletion] [--only sentiment]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("MMDEMO_BENCH_MEDIA", REPO.parent / "shared" / "media")) / "images"
SENTENCES = MEDIA.parent / "text" / "sst2_dev_first40.tsv"
IMAGE = REPO / "assets" / "skimage_chelsea.png"
LABELS = "cat, dog, bird, car, horse"
QUESTION = "what color is the cat?"
VILT_VQA = "dandelin/vilt-b32-finetuned-vqa"
BLIP_VQA = "Salesforce/blip-vqa-base"
TEXT = "i really love this movie, the food was great but the service was terrible"

COST_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("zero_shot/clip", "zero_shot", {"image": str(IMAGE), "labels": LABELS, "model": "openai/clip-vit-base-patch32"}),
    ("zero_shot/siglip", "zero_shot", {"image": str(IMAGE), "labels": LABELS,
                                        "model": "google/siglip-base-patch16-224"}),
    ("vqa/vilt", "vqa", {"image": str(IMAGE), "question": QUESTION, "model": "dandelin/vilt-b32-finetuned-vqa"}),
    ("vqa/blip", "vqa", {"image": str(IMAGE), "question": QUESTION, "model": "Salesforce/blip-vqa-base"}),
    ("captioning/blip", "captioning", {"image": str(IMAGE), "model": "Salesforce/blip-image-captioning-base",
                                       "max_new_tokens": 20}),
    ("sentiment/roberta", "sentiment", {"text": TEXT,
                                        "text_model": "cardiffnlp/twitter-roberta-base-sentiment-latest"}),
]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def runtime_over(models: Path):
    import mmdemo.tasks  # noqa: F401
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings

    return local_runtime(Settings(model_dir=models, device="cpu", memory_budget=8 * 1024**3))


def cost(runtime, repeats: int, only: str | None = None) -> list[tuple[str, float, float]]:
    rows = []
    for key, task, raw in COST_CASES:
        if only and not key.startswith(only):
            continue
        for explain in (False, True):  # warm: the model loaded, prompt embeddings memoised
            runtime.run(task, {**raw, "explain": explain})
        plain, explained = [], []
        for _ in range(repeats):
            for explain, times in ((False, plain), (True, explained)):
                started = time.perf_counter()
                runtime.run(task, {**raw, "explain": explain})
                times.append(time.perf_counter() - started)
        rows.append((key, statistics.median(plain), statistics.median(explained)))
        print(f"{key:20s} plain {rows[-1][1] * 1000:7.0f} ms   explain {rows[-1][2] * 1000:7.0f} ms   "
              f"ratio {rows[-1][2] / rows[-1][1]:.2f}x", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ deletion


def _masked(image: Image.Image, grid_shape: tuple[int, int], cells: np.ndarray) -> Image.Image:
    """`image` with the grid cells in `cells` (flat indices) painted the image's mean colour."""
    pixels = np.asarray(image.convert("RGB")).copy()
    rows, cols = grid_shape
    height, width = pixels.shape[:2]
    mean = pixels.reshape(-1, 3).mean(axis=0)
    for cell in cells:
        r, c = divmod(int(cell), cols)
        pixels[r * height // rows:(r + 1) * height // rows, c * width // cols:(c + 1) * width // cols] = mean
    return Image.fromarray(pixels)


def _square(path: Path) -> Image.Image:
    """A centre square crop: the processors' resize then maps the grid onto the image without a crop of theirs."""
    from PIL import ImageOps

    image = Image.open(path).convert("RGB")
    side = min(image.size)
    return ImageOps.fit(image, (side, side)).resize((448, 448))


def _zero_shot_score(runtime, image: Image.Image, model: str, label: str, labels: str) -> float:
    """The explained label's logit: log of its softmax share is not one label's alone, so read the logit back."""
    from mmdemo import registry
    from mmdemo.tasks.zero_shot import label_logits

    task = registry.get("zero_shot")
    inputs = task.validate({"image": image, "labels": labels, "model": model}, runtime.settings)
    with runtime.predictor.bundles(task, task.models_needed(inputs)) as bundles:
        import torch

        from mmdemo.tasks.base import image_pixels

        bundle = bundles["model"]
        with torch.inference_mode():
            logits = label_logits(bundle, torch.from_numpy(image_pixels(bundle, [image])), inputs.labels,
                                  inputs.templates)[0]
    return float(logits[list(inputs.labels).index(label)])


def _vilt_score(runtime, image: Image.Image, answer: str) -> float:
    from mmdemo import registry

    task = registry.get("vqa")
    inputs = task.validate({"image": image, "question": QUESTION, "model": VILT_VQA}, runtime.settings)
    with runtime.predictor.bundles(task, task.models_needed(inputs)) as bundles:
        import torch

        from mmdemo.media.pixels import reduce_for

        bundle = bundles["model"]
        batch = bundle.prepare(bundle.processor(images=reduce_for(bundle.processor, image), text=QUESTION,
                                                return_tensors="pt"))
        with torch.inference_mode():
            logits = bundle.model(**batch).logits[0]
        return float(logits[bundle.model.config.label2id[answer]])


@contextmanager
def _blip_vqa(runtime, image: Image.Image):
    """BLIP VQA's bundle, held, and the processor's batch for `image` and the question."""
    from mmdemo import registry
    from mmdemo.media.pixels import reduce_for

    task = registry.get("vqa")
    inputs = task.validate({"image": image, "question": QUESTION, "model": BLIP_VQA}, runtime.settings)
    with runtime.predictor.bundles(task, task.models_needed(inputs)) as bundles:
        bundle = bundles["model"]
        yield bundle, bundle.prepare(bundle.processor(images=reduce_for(bundle.processor, image), text=QUESTION,
                                                      return_tensors="pt"))


def _blip_answer_ids(runtime, image: Image.Image, answer: str):
    """The tokens of the app's `answer` (start token first, as `gradcam.blip_vqa_map` scores them), generated again:
    its text does not give them back, as the benchmark's BLIP has the tiny test tokenizer (258 of its 30,524 ids)."""
    import torch

    from mmdemo.models.generation import cache_kwargs
    from mmdemo.tasks.vqa import MAX_ANSWER_TOKENS

    with _blip_vqa(runtime, image) as (bundle, batch), torch.inference_mode():
        ids = bundle.model.generate(**batch, max_new_tokens=MAX_ANSWER_TOKENS, **cache_kwargs(bundle.architecture))
        if bundle.processor.decode(ids[0], skip_special_tokens=True).strip() != answer:
            raise RuntimeError(f"BLIP generated another answer than the app's {answer!r}")
        return ids[:1, : int((ids[0] != bundle.model.config.text_config.pad_token_id).sum())]


def _blip_score(runtime, image: Image.Image, answer_ids) -> float:
    """The answer's log-likelihood under BLIP VQA given `image` and the question, teacher-forced on its tokens."""
    import torch

    from mmdemo.explain.gradcam import _token_log_probs

    with _blip_vqa(runtime, image) as (bundle, batch), torch.inference_mode():
        model, mask = bundle.model, batch["attention_mask"]
        image_embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
        encoded = model.text_encoder(input_ids=batch["input_ids"], attention_mask=mask,
                                     encoder_hidden_states=image_embeds, return_dict=True).last_hidden_state
        logits = model.text_decoder(input_ids=answer_ids, attention_mask=torch.ones_like(answer_ids),
                                    encoder_hidden_states=encoded, encoder_attention_mask=mask,
                                    return_dict=True).logits
        return float(_token_log_probs(logits, answer_ids).sum())


def deletion(runtime, images: list[Path], fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), only: str | None = None
             ) -> list[str]:
    """Per method: mean score drop at 20 % (map vs random) and the areas under the deletion curves."""
    rng = np.random.default_rng(0)
    cases = [
        ("zero-shot CLIP B/32", "openai/clip-vit-base-patch32"),
        ("zero-shot SigLIP base", "google/siglip-base-patch16-224"),
        ("VQA ViLT B/32", VILT_VQA),
        ("VQA BLIP base (answer log-likelihood)", BLIP_VQA),
    ]
    lines = []
    for name, model in cases:
        if only and only.lower() not in name.lower():
            continue
        by_map, at_random = [], []
        for path in images:
            image = _square(path)
            if model in (VILT_VQA, BLIP_VQA):
                result = runtime.run("vqa", {"image": image, "question": QUESTION, "model": model, "explain": True})
                target = result["answer"]
                if model == BLIP_VQA:
                    target = _blip_answer_ids(runtime, image, target)
                grid = np.asarray(result["explanation"]["maps"][0]["grid"])
                vqa_score = _blip_score if model == BLIP_VQA else _vilt_score

                def score(img, target=target, vqa_score=vqa_score):
                    return vqa_score(runtime, img, target)
            else:
                result = runtime.run("zero_shot", {"image": image, "labels": LABELS, "model": model, "explain": True})
                item = result["explanation"]["maps"][0]
                target, grid = item["label"], np.asarray(item["grid"])

                def score(img, target=target, model=model):
                    return _zero_shot_score(runtime, img, model, target, LABELS)

            order = np.argsort(-grid.ravel(), kind="stable")
            shuffled = rng.permutation(grid.size)
            base = score(image)
            curve_map, curve_random = [], []
            for fraction in fractions:
                count = int(round(fraction * grid.size))
                curve_map.append(base - score(_masked(image, grid.shape, order[:count])) if count else 0.0)
                curve_random.append(base - score(_masked(image, grid.shape, shuffled[:count])) if count else 0.0)
            by_map.append(curve_map)
            at_random.append(curve_random)
        mean_map, mean_random = np.mean(by_map, axis=0), np.mean(at_random, axis=0)
        at20 = fractions.index(0.2)
        wins = sum(m[at20] > r[at20] for m, r in zip(by_map, at_random, strict=True))
        area = lambda curve: float(np.trapezoid(curve, fractions))  # noqa: E731
        line = (f"{name}: drop at 20 % by map {mean_map[at20]:.3f} vs random {mean_random[at20]:.3f} "
                f"(map larger on {wins}/{len(images)} images); area under the drop curve 0-50 %: "
                f"map {area(mean_map):.4f}, random {area(mean_random):.4f}")
        print(line, flush=True)
        lines.append(line)
    return lines


SENTIMENT_MODEL = "cardiffnlp/twitter-roberta-base-sentiment-latest"
DELETED_WORDS = (1, 2, 3)
RANDOM_DRAWS = 5


def _verdict_probability(runtime, texts: list[str], label: str) -> list[float]:
    return [runtime.run("sentiment", {"text": text, "text_model": SENTIMENT_MODEL})["probabilities"][label]
            for text in texts]


def _without(words: list[str], deleted) -> str:
    gone = {int(i) for i in deleted}
    return " ".join(w for i, w in enumerate(words) if i not in gone)


def sentiment_deletion(runtime, count: int) -> list[str]:
    """Gradient × input (the app's) and occlusion: the verdict's probability drop when each method's top 1-3 words
    are deleted, against random words; top-word agreement and Spearman correlation between the two methods."""
    import csv

    from scipy.stats import spearmanr

    from mmdemo.explain import attributions
    from mmdemo.tasks.sentiment.task import LABELS

    with SENTENCES.open(newline="") as f:
        sentences = [" ".join(row["text"].split()) for row in csv.DictReader(f, delimiter="\t")][:count]
    rng = np.random.default_rng(0)
    drops: dict[str, list[list[float]]] = {"gradient-x-input": [], "occlusion": [], "random": []}
    same_top, correlations, used = 0, [], 0
    for text in sentences:
        words = text.split()
        if len(words) <= max(DELETED_WORDS):
            continue
        result = runtime.run("sentiment", {"text": text, "text_model": SENTIMENT_MODEL, "explain": True})
        label = result["explanation"]["label"]
        full = result["probabilities"][label]
        gradient = np.asarray([w["score"] for w in result["explanation"]["words"]])

        def classify(texts: list[str]) -> list[list[float]]:
            return [list(runtime.run("sentiment", {"text": t, "text_model": SENTIMENT_MODEL})["probabilities"]
                         .values()) for t in texts]

        occluded, _ = attributions.occlusion(text, classify, LABELS.index(label))
        occlusion = np.asarray([w["score"] for w in occluded])
        for name, scores in (("gradient-x-input", gradient), ("occlusion", occlusion)):
            order = np.argsort(-scores, kind="stable")
            drops[name].append([full - p for p in _verdict_probability(
                runtime, [_without(words, order[:k]) for k in DELETED_WORDS], label)])
        draws = [rng.permutation(len(words)) for _ in range(RANDOM_DRAWS)]
        random_texts = [_without(words, draw[:k]) for k in DELETED_WORDS for draw in draws]
        random_drops = np.asarray([full - p for p in _verdict_probability(runtime, random_texts, label)])
        drops["random"].append(random_drops.reshape(len(DELETED_WORDS), RANDOM_DRAWS).mean(axis=1).tolist())
        same_top += int(np.argmax(gradient) == np.argmax(occlusion))
        correlations.append(spearmanr(gradient, occlusion).statistic)
        used += 1
    lines = []
    for name, rows in drops.items():
        mean = np.mean(rows, axis=0)
        above = [sum(r[i] > q[i] for r, q in zip(rows, drops["random"], strict=True)) for i in range(len(mean))]
        versus = "" if name == "random" else "; larger than random on " + ", ".join(
            f"{a}/{used}" for a in above)
        lines.append(f"sentiment RoBERTa base, {name}: verdict probability drop deleting the top "
                     f"{'/'.join(map(str, DELETED_WORDS))} words " + ", ".join(f"{m:.4f}" for m in mean) + versus)
    lines.append(f"sentiment RoBERTa base: top word the same for both methods on {same_top}/{used} sentences; "
                 f"Spearman correlation of the word scores: median {np.nanmedian(correlations):.2f}")
    for line in lines:
        print(line, flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=8, help="how many of the shared images the deletion test uses")
    parser.add_argument("--sentences", type=int, default=40, help="how many shared SST-2 sentences the sentiment "
                                                                   "deletion test uses")
    parser.add_argument("--skip-deletion", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--layers", type=int, help="relevance layers for CLIP, SigLIP and ViLT (default: the app's)")
    parser.add_argument("--only", help="only the cost cases whose key starts with this (zero_shot), the deletion "
                                           "cases whose name contains it (zero-shot, vilt, blip, sentiment)")
    args = parser.parse_args(argv)
    from mmdemo.explain import relevance

    if args.layers is not None:
        relevance.EXPLAINED_LAYERS = args.layers
    print(f"relevance layers: {relevance.EXPLAINED_LAYERS}", flush=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = ensure_bench_models(DEFAULT_ROOT)
    runtime = runtime_over(models)
    print(uptime(), flush=True)
    if not args.skip_cost:
        cost(runtime, args.repeats, args.only)
        print(uptime(), flush=True)
    if not args.skip_deletion:
        images = sorted(p for p in MEDIA.glob("*") if p.suffix.lower() in (".jpg", ".png"))[: args.images]
        deletion(runtime, images, only=args.only)
        if not args.only or args.only.lower() in "sentiment roberta base":
            sentiment_deletion(runtime, args.sentences)
        print(uptime(), flush=True)


if __name__ == "__main__":
    main()
