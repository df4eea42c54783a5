"""mmdemo.media.pixels: large images reduced for a processor give the processor's own pixel values within a grey
level or two, at the sizes worked out from each image processor's settings; small images pass untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import transformers
from PIL import Image

from mmdemo.media.pixels import REDUCING_GAP, output_size, reduce_for

MERLION = Path(__file__).resolve().parents[2] / "shared" / "media" / "images" / "merlion.jpg"  # 1192 x 874
needs_merlion = pytest.mark.skipif(not MERLION.is_file(), reason=f"{MERLION} not available (the shared media)")
PHONE = (4032, 3024)  # a 12-megapixel phone photo

# The image processors of the default models, with their hub settings.
PROCESSORS = {
    "clip": lambda: transformers.CLIPImageProcessor(),  # shortest edge 224, then a 224 crop
    "siglip": lambda: transformers.SiglipImageProcessor(),  # squashed to 224 x 224
    "blip": lambda: transformers.BlipImageProcessor(size={"height": 384, "width": 384}),
    "vilt": lambda: transformers.ViltImageProcessor(),  # shortest edge 384, longest at most 640
    "vit": lambda: transformers.ViTImageProcessor(),  # ViT-GPT2's: 224 x 224
}
# What a phone photo is reduced to: the largest whole factor leaving 3x the output size.
REDUCED = {"clip": (1008, 756), "siglip": (1008, 756), "blip": (2016, 1512), "vilt": (2016, 1512),
           "vit": (1008, 756)}


def grey_levels(processor, one: Image.Image, other: Image.Image) -> np.ndarray:
    """The difference of two images' pixel values from `processor`, in 8-bit grey levels."""
    a, b = (processor(images=image, return_tensors="np").pixel_values[0] for image in (one, other))
    return np.rint(np.abs(a - b) * np.asarray(processor.image_std).reshape(3, 1, 1) * 255)


@pytest.fixture(scope="module")
def phone_photo() -> Image.Image:
    if not MERLION.is_file():
        pytest.skip(f"{MERLION} not available (the shared media)")
    return Image.open(MERLION).convert("RGB").resize(PHONE, Image.Resampling.BICUBIC)


@pytest.mark.parametrize("name", PROCESSORS)
def test_a_phone_photo_is_reduced_to_three_times_the_output_and_keeps_its_pixel_values(name, phone_photo):
    processor = PROCESSORS[name]()
    reduced = reduce_for(processor, phone_photo)
    assert reduced.size == REDUCED[name]
    width, height = output_size(processor, phone_photo.size)
    assert REDUCING_GAP <= min(reduced.width / width, reduced.height / height) < 2 * REDUCING_GAP
    difference = grey_levels(processor, phone_photo, reduced)
    assert difference.max() <= 2 and difference.mean() <= 0.25
    assert processor(images=reduced, return_tensors="np").pixel_values.shape == (
        processor(images=phone_photo, return_tensors="np").pixel_values.shape)


@pytest.mark.parametrize("name", ["clip", "vilt"])
def test_even_pixel_noise_stays_within_a_grey_level_on_average(name):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (PHONE[1], PHONE[0], 3), dtype=np.uint8))
    processor = PROCESSORS[name]()
    reduced = reduce_for(processor, noise)
    assert reduced.size == REDUCED[name]
    assert grey_levels(processor, noise, reduced).mean() < 1


@needs_merlion
def test_images_within_the_gap_are_handed_over_untouched():
    photo = Image.open(MERLION).convert("RGB")  # 874 / 224 = 3.9: a factor of 1
    for make in PROCESSORS.values():
        assert reduce_for(make(), photo) is photo


def test_a_wide_image_is_reduced_by_its_short_side_for_aspect_keeping_processors():
    panorama = Image.new("RGB", (6000, 1500))
    assert output_size(PROCESSORS["vilt"](), panorama.size) == pytest.approx((1536, 384))
    assert reduce_for(PROCESSORS["vilt"](), panorama).size == (6000, 1500)  # 1500 / 384 / 3 = 1.3: a factor of 1
    assert reduce_for(PROCESSORS["clip"](), panorama).size == (3000, 750)  # 1500 / 224 / 3 = 2.2: 2
    assert reduce_for(PROCESSORS["siglip"](), panorama).size == (3000, 750)  # squashed: the short side again


def test_processors_that_do_not_resize_or_size_otherwise_get_the_image_itself(phone_photo):
    assert reduce_for(transformers.CLIPImageProcessor(do_resize=False), phone_photo) is phone_photo
    longest = transformers.CLIPImageProcessor(size={"longest_edge": 448})
    assert output_size(longest, PHONE) == (448, 336) and reduce_for(longest, phone_photo).size == (1344, 1008)
    pixels_only = transformers.CLIPImageProcessor()
    pixels_only.size = {"max_pixels": 1_000_000}
    assert output_size(pixels_only, PHONE) is None and reduce_for(pixels_only, phone_photo) is phone_photo
    assert reduce_for(object(), phone_photo) is phone_photo


def test_a_full_processor_is_read_through_its_image_processor(tiny_model_dir, phone_photo):
    processor = transformers.AutoProcessor.from_pretrained(tiny_model_dir / "dandelin" / "vilt-b32-finetuned-vqa")
    assert output_size(processor, PHONE) == output_size(processor.image_processor, PHONE) == (64 * 4 / 3, 64)
    assert reduce_for(processor, phone_photo).size == (269, 202)  # 3024 / 64 / 3 = 15.75: 4032 / 15, rounded up
