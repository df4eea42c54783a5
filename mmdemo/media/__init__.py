"""Turning uploads into clean inputs: 8-bit RGB PIL images (`images`) and mono float32 audio at 16 kHz (`audio`),
or InputError with one actionable line.

Everything a visitor uploads passes through here before a model sees it. Sizes and durations are checked from headers
before pixels or samples are decoded, decoding errors become one-line InputErrors, and files are closed before
returning. `pixels` reduces a decoded image to the size a model's processor looks at.
"""

from mmdemo.media.audio import (
    AUDIO_RATES,
    DAMAGED_AUDIO,
    EMPTY_AUDIO,
    INVALID_SAMPLES,
    MAX_AUDIO_CHANNELS,
    MAX_SAMPLES_PER_SECOND,
    NO_AUDIO,
    NOT_AUDIO,
    SILENCE_PEAK,
    SILENT_AUDIO,
    SPEECH_RATE,
    AudioClip,
    AudioInput,
    describe_duration,
    load_audio,
)
from mmdemo.media.images import (
    DAMAGED_IMAGE,
    DECODE_SIDE,
    IMAGE_FORMATS,
    INVALID_PIXELS,
    MAX_IMAGE_SIDE,
    NO_IMAGE,
    NOT_AN_IMAGE,
    ImageInput,
    load_image,
)

__all__ = [
    "AUDIO_RATES",
    "AudioClip",
    "AudioInput",
    "DAMAGED_AUDIO",
    "DAMAGED_IMAGE",
    "DECODE_SIDE",
    "EMPTY_AUDIO",
    "IMAGE_FORMATS",
    "INVALID_PIXELS",
    "INVALID_SAMPLES",
    "ImageInput",
    "MAX_AUDIO_CHANNELS",
    "MAX_IMAGE_SIDE",
    "MAX_SAMPLES_PER_SECOND",
    "NOT_AN_IMAGE",
    "NOT_AUDIO",
    "NO_AUDIO",
    "NO_IMAGE",
    "SILENCE_PEAK",
    "SILENT_AUDIO",
    "SPEECH_RATE",
    "describe_duration",
    "load_audio",
    "load_image",
]
