"""Drawing an explain map (a small 0-1 grid over the image's patches) at its image's size: as a soft mask for
gr.AnnotatedImage, or blended over the image as a heatmap. Plain Pillow and numpy: no model, no Gradio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from mmdemo.media import load_image

MAX_SIDE = 768  # px: a map is drawn on the image reduced to this (a 40-megapixel photo would make 40 M-value masks)
HEAT = np.array([255, 40, 0], dtype=np.float32)  # the colour of high relevance
BLEND = 0.6  # how much of the heat colour covers the most relevant patch


def display_image(source: Any) -> Image.Image:
    """The image as the maps are drawn on it: RGB, oriented as the models saw it, at most MAX_SIDE on a side."""
    image = source if isinstance(source, Image.Image) else load_image(source)
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = ImageOps.contain(image, (MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return image


def upsample(grid: Sequence[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """A map grid stretched (bilinear) to `size` = (width, height): float32 values in 0-1, shape (height, width)."""
    values = np.clip(np.asarray(grid, dtype=np.float32), 0, 1)
    if values.ndim != 2 or values.size == 0:
        return np.zeros((size[1], size[0]), dtype=np.float32)
    small = Image.fromarray(values, mode="F")
    return np.clip(np.asarray(small.resize(size, Image.Resampling.BILINEAR), dtype=np.float32), 0, 1)


def heatmap(image: Image.Image, grid: Sequence[Sequence[float]]) -> Image.Image:
    """The image with the map blended over it: relevant patches tinted, irrelevant ones left as they are."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    weight = upsample(grid, image.size)[..., None] * BLEND
    return Image.fromarray((pixels * (1 - weight) + HEAT * weight).astype(np.uint8))


def annotated(image: Image.Image, maps: Sequence[dict[str, Any]], key: str = "label"
              ) -> tuple[Image.Image, list[tuple[np.ndarray, str]]]:
    """gr.AnnotatedImage's value: the image and one soft mask per map, named by its `key` (a label, a word)."""
    return image, [(upsample(item["grid"], image.size), str(item[key])) for item in maps]
