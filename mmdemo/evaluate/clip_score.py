"""CLIPScore (Hessel et al., 2021): 2.5 × max(cos(image, "A photo depicts " + caption), 0), reference-free.

Computed with the CLIP model the zero-shot tab runs (its default), pinned in the runtime's shared cache like any
request's model, so a caption evaluation loads no second copy. Needs the local backend (the models in this process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mmdemo import registry
from mmdemo.media import load_image
from mmdemo.runtime import Runtime

WEIGHT = 2.5  # the paper's w: rescales CLIP B/32's typical cosines (0.2-0.4) towards 0-1
PROMPT = "A photo depicts "  # the paper's prefix before each caption
CHUNK = 16  # images encoded per forward pass


def clip_model_id() -> str:
    """The CLIP checkpoint CLIPScore uses: the zero-shot task's default (CLIP ViT-B/32, as in the paper)."""
    return registry.get("zero_shot").default_model.id


def available(runtime: Runtime) -> bool:
    """Whether this runtime can compute CLIPScore here: its models run in this process."""
    return hasattr(runtime.predictor, "bundles")


def clip_scores(runtime: Runtime, images: Sequence[Path], captions: Sequence[str]) -> list[float]:
    """CLIPScore of each (image, caption) pair.

    Args:
        runtime: a local runtime (`available`); its cache holds CLIP afterwards.
        images: image files (read with the app's limits).
        captions: one caption per image.
    """
    from mmdemo.tasks.base import image_pixels
    from mmdemo.tasks.zero_shot import prompt_embeddings

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    task = registry.get("zero_shot")
    spec = task.default_model
    predictor = runtime.predictor
    scores: list[float] = []
    with predictor.bundles(task, {"model": spec}) as bundles:
        bundle = bundles["model"]

        def chunk_scores(paths: Sequence[Path], texts: Sequence[str]) -> list[float]:
            pictures = [load_image(str(path), max_pixels=runtime.settings.max_image_pixels) for path in paths]
            with torch.inference_mode():
                pixels = bundle.prepare({"pixel_values": torch.from_numpy(image_pixels(bundle, pictures))})
                image_embeds = bundle.model.get_image_features(**pixels).pooler_output.float()
                image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
                text_embeds = prompt_embeddings(bundle, [PROMPT + text for text in texts]).to(image_embeds.device)
                cosines = (image_embeds * text_embeds).sum(dim=-1)
            return (WEIGHT * cosines.clamp(min=0)).cpu().tolist()

        for start in range(0, len(images), CHUNK):
            scores += predictor.on_model_thread(chunk_scores, images[start:start + CHUNK],
                                                captions[start:start + CHUNK])
    return scores
