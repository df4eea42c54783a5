"""Large images brought cheaply near the size a model's image processor resizes them to.

A phone photo (4032 x 3024) reaches the models at 224 or 384 pixels a side. The processors resize it with a bicubic
filter spread over the whole downscale (a 27-pixel-wide kernel for CLIP), which costs more than CLIP B/32 itself on a
12-megapixel photo (`python -m benchmarks.photo_size`). `reduce_for` first averages blocks of k x k pixels
(`Image.reduce`), leaving at least REDUCING_GAP times the processor's output size, and the processor's own resize does
the rest: Pillow's `resize(reducing_gap=...)` in two steps, which its documentation calls indistinguishable from the
one-step resize from a gap of 3. On a photo the pixel values differ from the one-step ones by at most 2 grey levels, 0.2
on average, and under one on average even for pixel noise (`tests/test_pixels.py`); images already within the gap are
handed over untouched."""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

REDUCING_GAP = 3.0


def reduce_for(processor: Any, image: Image.Image) -> Image.Image:
    """`image` reduced by the largest whole factor that keeps it REDUCING_GAP times the size `processor` resizes
    it to; the image itself where that factor is 1 or the processor's resize is unknown or off."""
    target = output_size(processor, image.size)
    if target is None:
        return image
    factor = math.floor(min(image.width / target[0], image.height / target[1]) / REDUCING_GAP)
    return image.reduce(factor) if factor >= 2 else image


def output_size(processor: Any, size: tuple[int, int]) -> tuple[float, float] | None:
    """(width, height) an image of `size` is resized to by `processor` (a processor or an image processor), at least;
    None where it does not resize or sizes in a way not covered here."""
    image_processor = getattr(processor, "image_processor", processor)
    wanted = getattr(image_processor, "size", None)
    if not getattr(image_processor, "do_resize", False) or wanted is None:
        return None
    get = wanted.get if isinstance(wanted, dict) else lambda key: getattr(wanted, key, None)
    width, height = size
    if get("shortest_edge"):  # aspect kept; a longest_edge cap (ViLT) only makes the output smaller
        scale = get("shortest_edge") / min(width, height)
        return width * scale, height * scale
    if get("height") and get("width"):  # squashed to a fixed size (BLIP, SigLIP, ViT)
        return get("width"), get("height")
    if get("longest_edge"):
        scale = get("longest_edge") / max(width, height)
        return width * scale, height * scale
    return None
