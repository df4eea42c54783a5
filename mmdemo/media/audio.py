"""Audio in: mono float32 samples at 16 kHz, or InputError with one line. Durations and rates are checked from headers
before samples are decoded, decoding errors become one-line InputErrors, and files are closed before returning."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.i18n import Message

SPEECH_RATE = 16_000  # Hz: the rate speech models (Whisper, wav2vec2) are trained on
MAX_AUDIO_CHANNELS = 8  # more channels than this is not a recording of speech
AUDIO_RATES = (1_000, 768_000)  # Hz: lowest and highest source sample rate accepted
# Samples decoded per second of audio (rate x channels): 8 channels at 48 kHz or stereo at 192 kHz. More is no
# recording of speech, and a few MB of FLAC silence at 768 kHz x 8 would cost minutes of CPU to find that out.
MAX_SAMPLES_PER_SECOND = 384_000
SILENCE_PEAK = 10 ** (-60 / 20)  # peak amplitude below -60 dBFS counts as silence
_AUDIO_BLOCK_FRAMES = 1 << 18  # frames decoded at a time, so memory follows the mono output, not the upload

# The English lines (what the API returns) of the commonest refusals, for callers that compare; raised by key.
NO_AUDIO = str(Message("error.audio.missing"))
NOT_AUDIO = str(Message("error.audio.not_audio"))
DAMAGED_AUDIO = str(Message("error.audio.damaged"))
EMPTY_AUDIO = str(Message("error.audio.no_samples"))
INVALID_SAMPLES = str(Message("error.audio.invalid_samples"))
SILENT_AUDIO = str(Message("error.audio.silent"))

AudioInput = str | os.PathLike | tuple[int, np.ndarray] | None


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
        raise InputError("error.audio.missing")
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
            raise InputError("error.audio.invalid_samples")
        self.frames += len(block)
        if self.frames > self._max_frames:  # the header understated the length
            raise InputError("error.audio.too_long", limit=describe_duration(self._max_seconds))
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        self._parts.append(self._resampler.resample_chunk(mono) if self._resampler else mono)

    def finish(self, channels: int) -> AudioClip:
        """The clip, once refused if it is empty or silent."""
        if self.frames == 0:
            raise InputError("error.audio.no_samples")
        if self._resampler:
            self._parts.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        samples = np.concatenate(self._parts)
        # Models see this peak as is: nothing here divides by it, so silence cannot blow up into noise.
        if samples.size == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK:
            raise InputError("error.audio.silent")
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
        raise InputError("error.audio.missing")
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"Audio samples must be a numpy array, not {type(samples).__name__}")
    source_rate = _checked_rate(rate)
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    if samples.ndim != 2 or not 1 <= samples.shape[1] <= MAX_AUDIO_CHANNELS:
        raise InputError("error.audio.array_shape", shape=samples.shape, max_channels=MAX_AUDIO_CHANNELS)
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
    raise InputError("error.audio.sample_type", dtype=dtype)


def _checked_rate(rate: object) -> int:
    """The sample rate as an int, or InputError when it is not a usable rate."""
    try:
        as_int = int(rate)  # type: ignore[call-overload]
        valid = as_int == rate and AUDIO_RATES[0] <= as_int <= AUDIO_RATES[1]
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise InputError("error.audio.rate", rate=rate, low=AUDIO_RATES[0], high=AUDIO_RATES[1])
    return as_int


def _check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise InputError("error.audio.too_long_by", duration=describe_duration(seconds),
                         limit=describe_duration(max_seconds))


def _check_header(rate: object, channels: int, frames: float | None, max_seconds: float) -> int:
    """Refuse from header facts alone (frames None: not declared); returns the sample rate."""
    source_rate = _checked_rate(rate)
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise InputError("error.audio.channels", channels=channels, max_channels=MAX_AUDIO_CHANNELS)
    if source_rate * channels > MAX_SAMPLES_PER_SECOND:
        count = Message(f"error.audio.channel_count.{'many' if channels > 1 else 'one'}", {"count": channels})
        raise InputError("error.audio.too_dense", channels=count, rate=source_rate)
    if frames is not None:
        if frames <= 0:
            raise InputError("error.audio.no_samples")
        _check_duration(frames / source_rate, max_seconds)
    return source_rate


def _load_audio_file(path: Path, max_seconds: float, target_rate: int) -> AudioClip:
    """Check the header, then decode block by block with soundfile, or audioread for what it cannot read."""
    if not path.is_file():
        raise InputError("error.audio.missing")
    if path.stat().st_size == 0:
        raise InputError("error.audio.empty_file")
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
        raise InputError("error.audio.damaged") from e
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
        raise InputError("error.audio.not_audio") from e
    except (audioread.DecodeError, OSError, EOFError) as e:
        raise InputError("error.audio.damaged") from e
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
