"""Zero-shot image classification: rank any labels you type against an image with CLIP or SigLIP.

CLIP's scores are a softmax over the given labels (they sum to 1); SigLIP scores every label on its
own with a sigmoid (they need not sum to 1).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.explain.grads import explain_flag
from mmdemo.media import load_image
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import GPU_SETUP_SECONDS, Comparable, ModelSpec, Task, image_pixels, stacked_pixels

DEFAULT_TEMPLATE = "a photo of a {}."
# A small prompt ensemble in the spirit of CLIP's ImageNet templates.
ENSEMBLE_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a drawing of a {}.",
)
MIN_LABELS = 2
MAX_LABEL_CHARS = 100
# GPU time per label x template, a first call's on CLIP L/14 (`python -m benchmarks.gpu_seconds`).
GPU_SECONDS_PER_PROMPT = 0.01
# Explain: the top labels that get a relevance map, and the GPU time their partial pass adds (a generous bound).
EXPLAINED_LABELS = 3
EXPLAIN_GPU_SECONDS = 3.0


@dataclass(frozen=True)
class ZeroShotInputs:
    model: ModelSpec
    image: Image.Image
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    explain: bool = False  # also compute relevance maps for the top labels (EXPLAINED_LABELS)
    pixel_values: np.ndarray | None = field(default=None, compare=False, repr=False)  # set by preprocess


def parse_labels(text: Any, *, max_labels: int) -> tuple[str, ...]:
    """Split on commas and newlines, strip, drop blanks and case-insensitive duplicates."""
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(item) for item in text)
    items = re.split(r"[,\n]", "" if text is None else str(text))
    labels: list[str] = []
    seen: set[str] = set()
    for item in items:
        label = " ".join(item.split())
        if label and label.casefold() not in seen:
            if len(label) > MAX_LABEL_CHARS:
                raise InputError("error.zero_shot.label_too_long", label=label[:20], limit=MAX_LABEL_CHARS)
            seen.add(label.casefold())
            labels.append(label)
    if len(labels) < MIN_LABELS:
        raise InputError("error.zero_shot.too_few_labels", minimum=MIN_LABELS)
    if len(labels) > max_labels:
        raise InputError("error.zero_shot.too_many_labels", count=len(labels), limit=max_labels)
    return tuple(labels)


def check_template(template: Any) -> str:
    text = " ".join(str(template or DEFAULT_TEMPLATE).split())
    if text.count("{}") != 1:
        raise InputError("error.zero_shot.template")
    return text


class ZeroShotTask(Task[ZeroShotInputs]):
    name = "zero_shot"
    title = "Zero-shot classification"
    description = "Rank your own labels against an image, no training needed."
    models = (
        ModelSpec("openai/clip-vit-base-patch32", note="CLIP ViT-B/32: softmax over your labels"),
        ModelSpec("openai/clip-vit-large-patch14", note="CLIP ViT-L/14: more accurate, slower"),
        ModelSpec("google/siglip-base-patch16-224", note="SigLIP: an independent sigmoid score per label"),
    )
    architectures = frozenset({"CLIPModel", "SiglipModel"})
    serve_family = "clip"

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> ZeroShotInputs:
        ensemble = bool(raw.get("ensemble"))
        templates = ENSEMBLE_TEMPLATES if ensemble else (check_template(raw.get("template")),)
        return ZeroShotInputs(
            model=self.model_spec(raw.get("model"), allow_custom=settings.allow_custom_models),
            image=load_image(raw.get("image"), max_pixels=settings.max_image_pixels),
            labels=parse_labels(raw.get("labels"), max_labels=settings.max_labels),
            templates=templates,
            explain=explain_flag(raw.get("explain")),
        )

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: ZeroShotInputs) -> dict[str, Any]:
        return self.predict_batch(bundles, [inputs])[0]

    def preprocess(self, bundles: Mapping[str, ModelBundle], inputs: ZeroShotInputs) -> ZeroShotInputs:
        """The image's pixel values, made in the request's own thread (see Task.preprocess)."""
        return replace(inputs, pixel_values=image_pixels(bundles["model"], [inputs.image]))

    def batch_key(self, inputs: ZeroShotInputs) -> Hashable | None:
        """Requests for the same model and templates share the image and text towers' passes; an explained one runs
        alone (its partial pass is its own)."""
        return None if inputs.explain else (inputs.model, inputs.templates)

    def predict_batch(self, bundles: Mapping[str, ModelBundle],
                      batch: Sequence[ZeroShotInputs]) -> list[dict[str, Any]]:
        bundle = bundles["model"]
        if len(batch) == 1 and batch[0].explain:
            return [explained_prediction(bundle, batch[0])]
        labels = list(dict.fromkeys(label for inputs in batch for label in inputs.labels))  # union, in order
        column = {label: i for i, label in enumerate(labels)}
        logits = label_logits(bundle, stacked_pixels(bundle, batch), labels, batch[0].templates)
        return [
            {"scores": logits_to_scores(bundle, row[[column[label] for label in inputs.labels]]).tolist(),
             "sigmoid": is_sigmoid(bundle)}
            for inputs, row in zip(batch, logits, strict=True)
        ]

    def format(self, output: dict[str, Any], inputs: ZeroShotInputs) -> dict[str, Any]:
        ranked = sorted(zip(inputs.labels, output["scores"]), key=lambda pair: -pair[1])
        result = {
            "labels": [{"label": label, "score": score} for label, score in ranked],
            "scoring": "sigmoid" if output["sigmoid"] else "softmax",
            "templates": list(inputs.templates),
        }
        if "explanation" in output:
            result["explanation"] = output["explanation"]
        return result

    def compare_view(self, result: Mapping[str, Any]) -> Comparable:
        ranking = tuple((row["label"], row["score"]) for row in result["labels"])
        return Comparable(ranking[0][0], ranking=ranking)

    def gpu_seconds(self, inputs: ZeroShotInputs) -> float:
        """One image, and one text-encoder row for each label and template."""
        explain = EXPLAIN_GPU_SECONDS if inputs.explain else 0.0
        return GPU_SETUP_SECONDS + 2.0 + GPU_SECONDS_PER_PROMPT * len(inputs.labels) * len(inputs.templates) + explain


def is_sigmoid(bundle: ModelBundle) -> bool:
    return bundle.architecture == "SiglipModel"


def label_logits(bundle: ModelBundle, pixel_values: torch.Tensor, labels: Sequence[str],
                 templates: Sequence[str]) -> torch.Tensor:
    """Image-label logits (images × labels): each label's text embedding is averaged over the templates."""
    model = bundle.model
    text_embeds = label_embeddings(bundle, labels, templates)
    pixels = bundle.prepare({"pixel_values": pixel_values})
    image_embeds = model.get_image_features(**pixels).pooler_output.float()
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.float().exp() * image_embeds @ text_embeds.T
    if is_sigmoid(bundle):
        logits = logits + model.logit_bias.float()
    return logits.cpu()


def label_embeddings(bundle: ModelBundle, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Unit text embeddings (labels x dim), each label's averaged over the templates."""
    text_embeds = prompt_embeddings(bundle, [template.format(label) for label in labels for template in templates])
    text_embeds = text_embeds.view(len(labels), len(templates), -1).mean(dim=1)
    return text_embeds / text_embeds.norm(dim=-1, keepdim=True)


def prompt_embeddings(bundle: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Unit-length text embeddings (prompts × dim), each encoded once per loaded model and then reused.

    A demo keeps its labels while images change (and a batch shares them), so the text tower, a third of
    CLIP B/32's time and over half of SigLIP's on a CPU, runs only for prompts it has not seen.
    """

    def encode(keys: list[tuple[str, str]]) -> list[torch.Tensor]:
        # SigLIP's text tower reads the last position: it was trained with max-length padding.
        padding = "max_length" if is_sigmoid(bundle) else True
        text = bundle.prepare(bundle.processor(text=[prompt for _, prompt in keys], padding=padding,
                                               truncation=True, return_tensors="pt"))
        embeds = bundle.model.get_text_features(**text).pooler_output.float()
        embeds = embeds / embeds.norm(dim=-1, keepdim=True)
        return [row.clone() for row in embeds]  # own storage: evicting one row frees it

    return torch.stack(bundle.memo.get_many([("text embedding", prompt) for prompt in prompts], encode))


def logits_to_scores(bundle: ModelBundle, logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the given labels for CLIP; an independent sigmoid per label for SigLIP."""
    return logits.sigmoid() if is_sigmoid(bundle) else logits.softmax(dim=-1)


def score_labels(bundle: ModelBundle, image: Image.Image, labels: tuple[str, ...],
                 templates: tuple[str, ...]) -> torch.Tensor:
    """Scores for `labels` on one image, aligned with `labels` (used by the sentiment task too)."""
    pixels = torch.from_numpy(image_pixels(bundle, [image]))
    return logits_to_scores(bundle, label_logits(bundle, pixels, labels, templates)[0])


def explained_prediction(bundle: ModelBundle, inputs: ZeroShotInputs) -> dict[str, Any]:
    """The plain prediction, plus a relevance map for each of the top EXPLAINED_LABELS labels (mmdemo.explain)."""
    from mmdemo.explain import relevance

    capture = relevance.capture_for_zero_shot(bundle)
    with capture.during():
        logits = label_logits(bundle, stacked_pixels(bundle, [inputs]), inputs.labels, inputs.templates)[0]
    scores = logits_to_scores(bundle, logits)
    top = scores.argsort(descending=True)[:EXPLAINED_LABELS].tolist()
    text = label_embeddings(bundle, [inputs.labels[i] for i in top], inputs.templates)
    maps, _ = relevance.zero_shot_maps(bundle, capture.value, text)
    note = "Relevance (Chefer et al. 2021) of each image patch to the label's logit"
    if len(inputs.labels) > EXPLAINED_LABELS:
        note += f"; only the top {EXPLAINED_LABELS} of {len(inputs.labels)} labels are explained"
    return {"scores": scores.tolist(), "sigmoid": is_sigmoid(bundle),
            "explanation": {"method": "chefer-relevance", "note": note,
                            "maps": [{"label": inputs.labels[i], "score": float(scores[i]), "grid": grid}
                                     for i, grid in zip(top, maps, strict=True)]}}
