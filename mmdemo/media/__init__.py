"""Turning uploads into clean inputs: 8-bit RGB PIL images and mono float32 audio at 16 kHz, or InputError.

Everything a visitor uploads passes through here before a model sees it. Sizes and durations are
checked from headers before pixels or samples are decoded, decoding errors become one-line
InputErrors, and files are closed before returning.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmdemo.config import Settings
from mmdemo.errors import InputError

SPEECH_RATE = 16_000  # Hz: the rate speech models (Whisper, wav2vec2) are trained on
MAX_IMAGE_SIDE = 4096  # pixels: longer sides are downscaled after decoding
# Pixels: a JPEG decodes at 1/2, 1/4 or 1/8 scale (libjpeg's, at a fraction of the cost) while its shorter side
# stays at least this: 3x the largest input of the curated image models (384), which mmdemo.media.pixels reduces to.
DECODE_SIDE = 1152
MAX_AUDIO_CHANNELS = 8  # more channels than this is not a recording of speech
AUDIO_RATES = (1_000, 768_000)  # Hz: lowest and highest source sample rate accepted
# Samples decoded per second of audio (rate x channels): 8 channels at 48 kHz or stereo at 192 kHz. More is no
# recording of speech, and a few MB of FLAC silence at 768 kHz x 8 would cost minutes of CPU to find that out.
MAX_SAMPLES_PER_SECOND = 384_000
SILENCE_PEAK = 10 ** (-60 / 20)  # peak amplitude below -60 dBFS counts as silence
# Decoders a visitor can reach (JPEG also opens MPO); the rest (EPS runs Ghostscript, ...) stay off.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF")
_AUDIO_BLOCK_FRAMES = 1 << 18  # frames decoded at a time, so memory follows the mono output, not the upload
_WHITE = (255, 255, 255)

NO_IMAGE = "No image: upload an image or pick an example"
NO_AUDIO = "No audio: record or upload a clip"
NOT_AN_IMAGE = "This file is not an image that can be read: upload a PNG, JPEG, WebP, GIF, BMP or TIFF file"
INVALID_PIXELS = "Image contains invalid values (NaN or infinity): save it again as PNG or JPEG"
DAMAGED_IMAGE = "This image file is damaged or incomplete: upload it again or save it in another format"
NOT_AUDIO = "This file is not audio that can be read: upload a WAV, FLAC, MP3 or OGG file"
DAMAGED_AUDIO = "This audio file is damaged and could not be decoded: upload it again or convert it to WAV"
EMPTY_AUDIO = "Audio has no samples: record again or upload a longer clip"
INVALID_SAMPLES = "Audio contains invalid samples (NaN or infinity): export it again as 16-bit WAV"
SILENT_AUDIO = "Audio is silent: record again or upload a clip with speech"

ImageInput = str | os.PathLike | Image.Image | np.ndarray | None
AudioInput = str | os.PathLike | tuple[int, np.ndarray] | None


# ---------------------------------------------------------------- images


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
        raise InputError(NO_IMAGE)
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
        raise InputError(NO_IMAGE)
    if path.stat().st_size == 0:
        raise InputError("This image file is empty (0 bytes): upload it again")
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
        raise InputError(_pixel_bomb_message(e, max_pixels)) from e
    except UnidentifiedImageError as e:
        raise InputError(NOT_AN_IMAGE) from e
    except OSError as e:
        raise InputError(DAMAGED_IMAGE) from e


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
        raise InputError(_too_many_pixels(width, height, max_pixels))
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
        message = f"This image is too large to decode here: upload one under {_describe_pixels(max_pixels)}"
        raise InputError(message) from e
    except Exception as e:  # Pillow's decoders raise many types on crafted or cut-off files
        raise InputError(DAMAGED_IMAGE) from e
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
        message = f"Images in colour mode {mode} are not supported: save it as PNG or JPEG and upload again"
        raise InputError(message) from e


def _high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float greyscale array to uint8 by the range its values use."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(INVALID_PIXELS)
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
        raise InputError(f"Image array has shape {array.shape}; expected height x width with 1, 3 or 4 channels")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InputError("Image has no pixels: upload an image or pick an example")
    if width * height > max_pixels:
        raise InputError(_too_many_pixels(width, height, max_pixels))
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
            raise InputError(INVALID_PIXELS)
        if low < 0 or high > 1:
            raise InputError(f"Image values run from {low:g} to {high:g}; float images must be in [0, 1]: rescale them")
        return _high_depth_to_uint8(array)
    raise InputError(f"Image arrays of type {array.dtype} are not supported: use uint8, uint16 or float in [0, 1]")


def _describe_pixels(count: int) -> str:
    """'4,096 pixels', '2.1 megapixels', '10,000 megapixels'."""
    if count < 1_000_000:
        return f"{count:,} pixels"
    megapixels = count / 1e6
    return f"{megapixels:,.0f} megapixels" if megapixels >= 10 else f"{megapixels:.1f} megapixels"


def _too_many_pixels(width: int, height: int, max_pixels: int) -> str:
    return (
        f"Image is {width}x{height} pixels ({_describe_pixels(width * height)}); "
        f"the limit is {_describe_pixels(max_pixels)}: resize it and upload again"
    )


def _pixel_bomb_message(error: Exception, max_pixels: int) -> str:
    """Pillow's decompression-bomb refusal as one line; its message is the only place the size appears."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = _describe_pixels(int(found.group(1))) if found else "too large to open safely"
    return f"Image is {size}; the limit is {_describe_pixels(max_pixels)}: resize it and upload again"


# ---------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioClip:
    """A clean recording: mono float32 samples at the rate speech models expect."""

    samples: np.ndarray  # float32, shape (n,), at sample_rate; integers scaled to [-1, 1], floats as given
    source_rate: int  # Hz of the upload before resampling
    channels: int  # channels in the upload before mixing to mono
    duration: float  # seconds of audio decoded from the upload
    sample_rate: int = SPEECH_RATE  # Hz of samples


def describe_duration(seconds: float) -> str:
    """A duration for messages: '12.5 s', '10 min', '11 min 5 s', '3 h 0 min'."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"A duration must be a finite number of seconds >= 0, got {seconds!r}")
    if round(seconds, 1) < 60:
        return f"{round(seconds, 1):g} s"
    whole_seconds = round(seconds)
    if whole_seconds < 3600:
        minutes, rest = divmod(whole_seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"


def load_audio(
    value: AudioInput,
    *,
    max_seconds: float = Settings.max_audio_seconds,
    target_rate: int = SPEECH_RATE,
) -> AudioClip:
    """Turn an uploaded or recorded clip into mono float32 samples at target_rate.

    Args:
        value: a file path, or the (sample_rate, samples) tuple of gr.Audio(type="numpy"), samples shaped
            (n,) or (n, channels) of int8, uint8, int16, int32 or float.
        max_seconds: longer clips are refused, from the file header where there is one, before decoding.
        target_rate: the sample rate of the returned samples.

    Returns:
        An AudioClip; loudness is left as recorded.

    Raises:
        InputError: nothing usable was given, or the clip is too long, empty, silent, damaged or not audio.
    """
    if max_seconds <= 0 or not AUDIO_RATES[0] <= target_rate <= AUDIO_RATES[1]:
        raise ValueError(
            f"max_seconds must be positive and target_rate within {AUDIO_RATES}, got {max_seconds}, {target_rate}"
        )
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(NO_AUDIO)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _audio_from_array(value[0], value[1], max_seconds, target_rate)
    if isinstance(value, (str, os.PathLike)):
        return _load_audio_file(Path(value), max_seconds, target_rate)
    raise TypeError(f"load_audio takes a path or a (sample_rate, ndarray) tuple, not {type(value).__name__}")


class _MonoStream:
    """Mixes decoded blocks to mono and resamples them as they arrive, refusing invalid or overlong audio."""

    def __init__(self, source_rate: int, target_rate: int, max_seconds: float) -> None:
        self._source_rate = source_rate
        self._target_rate = target_rate
        self._max_frames = max_seconds * source_rate
        self._max_seconds = max_seconds
        self._resampler = (
            soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32", quality="HQ")
            if source_rate != target_rate
            else None
        )
        self._parts: list[np.ndarray] = []
        self.frames = 0

    def add(self, block: np.ndarray) -> None:
        """Take a (frames, channels) float32 block."""
        if not np.isfinite(block).all():
            raise InputError(INVALID_SAMPLES)
        self.frames += len(block)
        if self.frames > self._max_frames:  # the header understated the length
            raise InputError(f"Audio is longer than the {describe_duration(self._max_seconds)} limit: trim it")
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        self._parts.append(self._resampler.resample_chunk(mono) if self._resampler else mono)

    def finish(self, channels: int) -> AudioClip:
        """The clip, once refused if it is empty or silent."""
        if self.frames == 0:
            raise InputError(EMPTY_AUDIO)
        if self._resampler:
            self._parts.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        samples = np.concatenate(self._parts)
        # Models see this peak as is: nothing here divides by it, so silence cannot blow up into noise.
        if samples.size == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK:
            raise InputError(SILENT_AUDIO)
        return AudioClip(
            samples=samples,
            source_rate=self._source_rate,
            channels=channels,
            duration=self.frames / self._source_rate,
            sample_rate=self._target_rate,
        )


def _audio_from_array(rate: object, samples: object, max_seconds: float, target_rate: int) -> AudioClip:
    """Check and convert the (sample_rate, ndarray) pair a gr.Audio(type="numpy") component gives."""
    if samples is None:
        raise InputError(NO_AUDIO)
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"Audio samples must be a numpy array, not {type(samples).__name__}")
    source_rate = _checked_rate(rate)
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    if samples.ndim != 2 or not 1 <= samples.shape[1] <= MAX_AUDIO_CHANNELS:
        raise InputError(
            f"Audio array has shape {samples.shape}; expected (samples,) or (samples, channels) "
            f"with at most {MAX_AUDIO_CHANNELS} channels"
        )
    _check_duration(len(samples) / source_rate, max_seconds)
    scale = _sample_scale(samples.dtype)
    stream = _MonoStream(source_rate, target_rate, max_seconds)
    for start in range(0, len(samples), _AUDIO_BLOCK_FRAMES):
        stream.add(scale(samples[start : start + _AUDIO_BLOCK_FRAMES]))
    return stream.finish(channels=samples.shape[1])


def _sample_scale(dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """A function taking samples of this dtype to float32, integers scaled to [-1, 1]."""
    if dtype == np.uint8:  # 8-bit WAV is offset binary: 128 is zero
        return lambda block: (block.astype(np.float32) - 128) / 128
    if dtype.kind == "i" and dtype.itemsize in (1, 2, 4):
        full_scale = float(2 ** (8 * dtype.itemsize - 1))
        return lambda block: block.astype(np.float32) / full_scale
    if dtype.kind == "f":
        return lambda block: block.astype(np.float32)
    raise InputError(
        f"Audio samples of type {dtype} are not supported: use int8, uint8, int16, int32 or float samples"
    )


def _checked_rate(rate: object) -> int:
    """The sample rate as an int, or InputError when it is not a usable rate."""
    try:
        as_int = int(rate)  # type: ignore[call-overload]
        valid = as_int == rate and AUDIO_RATES[0] <= as_int <= AUDIO_RATES[1]
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise InputError(
            f"Audio sample rate {rate!r} Hz is not supported: use a rate between "
            f"{AUDIO_RATES[0]:,} and {AUDIO_RATES[1]:,} Hz"
        )
    return as_int


def _check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise InputError(
            f"Audio is {describe_duration(seconds)} long; the limit is {describe_duration(max_seconds)}: trim it"
        )


def _check_header(rate: object, channels: int, frames: float | None, max_seconds: float) -> int:
    """Refuse from header facts alone (frames None: not declared); returns the sample rate."""
    source_rate = _checked_rate(rate)
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise InputError(
            f"Audio has {channels} channels; at most {MAX_AUDIO_CHANNELS} are supported: mix it down to mono or stereo"
        )
    if source_rate * channels > MAX_SAMPLES_PER_SECOND:
        raise InputError(
            f"Audio has {channels} channel{'s' if channels > 1 else ''} at {source_rate:,} Hz, far more than speech "
            "needs: export it as mono or stereo at 48 kHz"
        )
    if frames is not None:
        if frames <= 0:
            raise InputError(EMPTY_AUDIO)
        _check_duration(frames / source_rate, max_seconds)
    return source_rate


def _load_audio_file(path: Path, max_seconds: float, target_rate: int) -> AudioClip:
    """Check the header, then decode block by block with soundfile, or audioread for what it cannot read."""
    if not path.is_file():
        raise InputError(NO_AUDIO)
    if path.stat().st_size == 0:
        raise InputError("This audio file is empty (0 bytes): record again or upload another file")
    try:
        info = soundfile.info(str(path))
    except (soundfile.SoundFileError, RuntimeError):
        return _load_audio_with_audioread(path, max_seconds, target_rate)
    source_rate = _check_header(info.samplerate, info.channels, info.frames, max_seconds)
    stream = _MonoStream(source_rate, target_rate, max_seconds)
    try:
        with soundfile.SoundFile(str(path)) as file:
            while len(block := file.read(_AUDIO_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                stream.add(block)
    except (soundfile.SoundFileError, RuntimeError) as e:
        raise InputError(DAMAGED_AUDIO) from e
    return stream.finish(channels=info.channels)


def _load_audio_with_audioread(path: Path, max_seconds: float, target_rate: int) -> AudioClip:
    """Decode formats libsndfile cannot (e.g. AAC/M4A) through audioread's backends, header checked first."""
    import audioread  # only needed for the rare formats soundfile cannot open

    try:
        with audioread.audio_open(str(path)) as source:
            channels = int(source.channels)
            # Some backends cannot tell the length up front (0): the stream enforces the limit then.
            declared_frames = source.duration * source.samplerate if source.duration else None
            source_rate = _check_header(source.samplerate, channels, declared_frames, max_seconds)
            stream = _MonoStream(source_rate, target_rate, max_seconds)
            for block in _int16_frames(source, channels):
                stream.add(block)
    except audioread.NoBackendError as e:
        raise InputError(NOT_AUDIO) from e
    except (audioread.DecodeError, OSError, EOFError) as e:
        raise InputError(DAMAGED_AUDIO) from e
    return stream.finish(channels=channels)


def _int16_frames(buffers: Iterable[bytes], channels: int) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks from audioread's interleaved 16-bit buffers, which may split frames."""
    frame_bytes = 2 * channels
    carry = b""
    for buffer in buffers:
        data = carry + bytes(buffer)
        usable = len(data) - len(data) % frame_bytes
        carry = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768
