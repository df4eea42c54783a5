"""Images in: 8-bit RGB PIL images, or InputError with one line. Sizes are checked from headers before pixels are
decoded, decoding errors become one-line InputErrors, and files are closed before returning."""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.i18n import Message

MAX_IMAGE_SIDE = 4096  # pixels: longer sides are downscaled after decoding
# Pixels: a JPEG decodes at 1/2, 1/4 or 1/8 scale (libjpeg's, at a fraction of the cost) while its shorter side
# stays at least this: 3x the largest input of the curated image models (384), which mmdemo.media.pixels reduces to.
DECODE_SIDE = 1152
# Decoders a visitor can reach (JPEG also opens MPO); the rest (EPS runs Ghostscript, ...) stay off.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF")
_WHITE = (255, 255, 255)

# The English lines (what the API returns) of the commonest refusals, for callers that compare; raised by key.
NO_IMAGE = str(Message("error.image.missing"))
NOT_AN_IMAGE = str(Message("error.image.not_an_image"))
INVALID_PIXELS = str(Message("error.image.invalid_pixels"))
DAMAGED_IMAGE = str(Message("error.image.damaged"))

ImageInput = str | os.PathLike | Image.Image | np.ndarray | None


def load_image(
    value: ImageInput,
    *,
    max_pixels: int = Settings.max_image_pixels,
    max_side: int = MAX_IMAGE_SIDE,
    decode_side: int = DECODE_SIDE,
) -> Image.Image:
    """Turn an uploaded image into an upright 8-bit RGB image no larger than max_side on either side.

    Args:
        value: a file path, a PIL image or a numpy array (HxW or HxWx1/3/4; uint8, uint16 or float in [0, 1]).
        max_pixels: images declaring more pixels than this are refused before decoding.
        max_side: longer sides are downscaled to this, keeping the aspect ratio.
        decode_side: JPEG files may decode at a reduced scale that keeps the shorter side at least this.

    Returns:
        A new RGB image; transparency is composited on white, animations give their first frame.

    Raises:
        InputError: nothing usable was given, or the image is too large, damaged or not an image.
    """
    if min(max_pixels, max_side, decode_side) < 1:
        raise ValueError(f"max_pixels, max_side and decode_side must be positive, got {max_pixels}, {max_side} "
                         f"and {decode_side}")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("error.image.missing")
    if isinstance(value, np.ndarray):
        return _fit_within(_to_rgb(_image_from_array(value, max_pixels)), max_side)
    if isinstance(value, Image.Image):
        image = _clean_image(value, max_pixels, max_side)
        return image.copy() if image is value else image  # the caller keeps their own object
    if isinstance(value, (str, os.PathLike)):
        return _load_image_file(Path(value), max_pixels, max_side, decode_side)
    raise TypeError(f"load_image takes a path, a PIL image or a numpy array, not {type(value).__name__}")


def _load_image_file(path: Path, max_pixels: int, max_side: int, decode_side: int) -> Image.Image:
    """Open, check and decode an image file, closing it before returning."""
    if not path.is_file():
        raise InputError("error.image.missing")
    if path.stat().st_size == 0:
        raise InputError("error.image.empty_file")
    try:
        # Pillow only warns between its own limit and twice that; a visitor's bomb should stop here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with path.open("rb") as file:
                opened = Image.open(file, formats=_openable_formats())
                image = _clean_image(opened, max_pixels, max_side, draft_side=decode_side)
                # A plain in-memory image: the opened one still points at the file closed below.
                return image.copy() if image is opened else image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _pixel_bomb(e, max_pixels) from e
    except UnidentifiedImageError as e:
        raise InputError("error.image.not_an_image") from e
    except OSError as e:
        raise InputError("error.image.damaged") from e


@functools.cache
def _openable_formats() -> tuple[str, ...]:
    """IMAGE_FORMATS that this Pillow build can open; Image.open fails on names it does not know."""
    Image.init()
    return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


def _clean_image(image: Image.Image, max_pixels: int, max_side: int, *, draft_side: int | None = None) -> Image.Image:
    """Check the declared size, decode the first frame, then make it upright, RGB and small enough; a JPEG file
    decodes at reduced scale where that keeps its shorter side at least `draft_side` (None: full scale)."""
    width, height = image.size
    if width * height > max_pixels:
        raise _too_many_pixels(width, height, max_pixels)
    if image.tell() != 0:
        image.seek(0)
    if draft_side and image.format in ("JPEG", "MPO"):
        scale = min(max_side / max(width, height), draft_side / min(width, height))
        if scale <= 0.5:  # libjpeg takes the strongest of 1/2, 1/4 and 1/8 that leaves at least this size
            image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except MemoryError as e:
        raise InputError("error.image.too_large_to_decode", limit=_describe_pixels(max_pixels)) from e
    except Exception as e:  # Pillow's decoders raise many types on crafted or cut-off files
        raise InputError("error.image.damaged") from e
    return _fit_within(_to_rgb(_upright(image)), max_side)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF leaves the image as stored."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in range(2, 9):
            return ImageOps.exif_transpose(image)
    except Exception:  # broken metadata should not cost the visitor their picture
        pass
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, scaling high bit depths and compositing alpha on white."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        # Pillow's own conversion clips these to 0..255 instead of scaling them.
        return Image.fromarray(_high_depth_to_uint8(np.asarray(image))).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _on_white(image.convert("RGBA"))
    try:
        return image.convert("RGB")
    except ValueError as e:
        raise InputError("error.image.colour_mode", mode=mode) from e


def _high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float greyscale array to uint8 by the range its values use."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError("error.image.invalid_pixels")
    kind = values.dtype.kind
    if kind == "f" and low >= 0 and high <= 1:
        offset, factor = 0.0, 255.0
    elif kind != "u" and low >= 0 and high <= 255:
        offset, factor = 0.0, 1.0  # 8-bit values held in a wider type (Pillow's own L -> I or F)
    elif kind != "f" and low >= 0 and high <= 65535:
        offset, factor = 0.0, 1 / 257  # 16-bit: 65535 -> 255
    else:
        offset, factor = low, (255 / (high - low) if high > low else 0.0)  # stretch whatever range it uses
    return _convert_by_rows(values, lambda rows: np.clip(np.rint((rows - offset) * factor), 0, 255))


def _convert_by_rows(values: np.ndarray, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """convert() applied a band of rows at a time into uint8, so float temporaries stay small."""
    out = np.empty(values.shape, dtype=np.uint8)
    row_size = max(1, values[:1].size)
    step = max(1, (1 << 20) // row_size)
    for start in range(0, len(values), step):
        out[start : start + step] = convert(values[start : start + step])
    return out


def _on_white(rgba: Image.Image) -> Image.Image:
    """Composite an RGBA image on a white background."""
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size with the longer side at most max_side, aspect kept, never 0."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so that neither side exceeds max_side."""
    size = _fitted_size(image.size, max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _image_from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """A PIL image from an HxW or HxWx1/3/4 array of uint8, uint16, bool or float in [0, 1]."""
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise InputError("error.image.array_shape", shape=array.shape)
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InputError("error.image.no_pixels")
    if width * height > max_pixels:
        raise _too_many_pixels(width, height, max_pixels)
    pixels = _array_to_uint8(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(pixels))


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale pixel values to uint8 by their dtype."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _high_depth_to_uint8(array)
    if array.dtype.kind == "f":
        low, high = float(array.min()), float(array.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError("error.image.invalid_pixels")
        if low < 0 or high > 1:
            raise InputError("error.image.float_range", low=low, high=high)
        return _high_depth_to_uint8(array)
    raise InputError("error.image.array_type", dtype=array.dtype)


def _describe_pixels(count: int) -> Message:
    """'4,096 pixels', '2.1 megapixels', '10,000 megapixels' (in the visitor's language)."""
    if count < 1_000_000:
        return Message("error.image.size.pixels", {"count": count})
    megapixels = count / 1e6
    key = "error.image.size.megapixels_many" if megapixels >= 10 else "error.image.size.megapixels"
    return Message(key, {"megapixels": megapixels})


def _too_many_pixels(width: int, height: int, max_pixels: int) -> InputError:
    return InputError("error.image.too_many_pixels", width=width, height=height,
                      size=_describe_pixels(width * height), limit=_describe_pixels(max_pixels))


def _pixel_bomb(error: Exception, max_pixels: int) -> InputError:
    """Pillow's decompression-bomb refusal as one line; its message is the only place the size appears."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = _describe_pixels(int(found.group(1))) if found else Message("error.image.size.unsafe")
    return InputError("error.image.too_large", size=size, limit=_describe_pixels(max_pixels))


