"""What comes into the live mode from outside the policy: microphone chunks as Gradio sends them, converted to the
policy's 16 kHz mono audio, and the slots that bound how many streams run at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from mmdemo.errors import InputError
from mmdemo.tasks.speech.vad import SAMPLE_RATE


class ChunkConverter:
    """Microphone chunks as Gradio sends them, (rate, samples of any dtype, mono or not), to 16 kHz mono float32,
    resampled as one stream across chunks (soxr keeps the filter state, so chunk edges make no clicks)."""

    def __init__(self) -> None:
        self.rate: int | None = None
        self._resampler: Any = None

    def convert(self, chunk: Any) -> np.ndarray:
        if chunk is None:
            return np.zeros(0, dtype=np.float32)
        try:
            rate, samples = chunk
            rate = int(rate)
        except (TypeError, ValueError) as e:
            raise InputError("error.speech_live.chunk") from e
        samples = np.asarray(samples)
        if not 8_000 <= rate <= 384_000:
            raise InputError("error.speech_live.mic_rate", rate=rate)
        if self.rate is None:
            self.rate = rate
        elif rate != self.rate:
            raise InputError("error.speech_live.rate_changed", before=self.rate, after=rate)
        if samples.dtype.kind in "iu":
            info = np.iinfo(samples.dtype)
            middle = (int(info.max) + int(info.min) + 1) / 2
            samples = (samples.astype(np.float32) - middle) / (int(info.max) - middle + 1)
        samples = samples.astype(np.float32, copy=False)
        if samples.ndim == 2:
            samples = samples.mean(axis=1) if samples.shape[1] <= 8 else samples.mean(axis=0)
        samples = np.nan_to_num(samples.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        if rate == SAMPLE_RATE:
            return samples
        if self._resampler is None:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        return self._resampler.resample_chunk(samples)


class StreamSlots:
    """At most `capacity` live streams at once, thread-safe. A stream that has not stepped for `idle_seconds` (its
    visitor left without stopping) loses its slot to the next one that asks, and is closed then."""

    def __init__(self, capacity: int, idle_seconds: float = 30.0) -> None:
        self.capacity = capacity
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._holders: dict[int, tuple[Any, float]] = {}  # id(holder) -> (holder, last activity)

    def acquire(self, holder: Any, now: float | None = None) -> bool:
        """Take a slot for `holder` (an object with a close() method) or refresh its own; False when all are taken."""
        now = time.monotonic() if now is None else now
        stale = []
        with self._lock:
            if id(holder) not in self._holders:
                for key, (other, last) in list(self._holders.items()):
                    if now - last > self.idle_seconds:
                        stale.append(other)
                        del self._holders[key]
                if len(self._holders) >= self.capacity:
                    return False
            self._holders[id(holder)] = (holder, now)
        for other in stale:
            other.close()
        return True

    def release(self, holder: Any) -> None:
        with self._lock:
            self._holders.pop(id(holder), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._holders)
