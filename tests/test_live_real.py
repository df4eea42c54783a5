"""Real speech streamed through the live policy, the real VAD and real Whisper tiny.en (the offline pack), each step
through Runtime.run: committed words are never rewritten, and the final text is within the issue's WER bound of
the offline transcript of the same clips.

Chunks are fed synchronously (each step sees the audio up to its chunk), so the result does not depend on how busy
the machine is; `python -m benchmarks.live` measures the timing.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import mmdemo.tasks  # noqa: F401
from mmdemo.backends import local_runtime
from mmdemo.config import Settings, default_model_dir
from mmdemo.media import load_audio
from mmdemo.offline.packs import PACKS, install_state
from mmdemo.tasks.speech import step_threads
from mmdemo.tasks.speech.live import LiveOptions, LiveTranscriber
from mmdemo.testing.wer import corpus_wer

pytestmark = pytest.mark.acceptance

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
TINY_EN = "openai/whisper-tiny.en"
CLIPS = ["audio/jfk.flac", "audio/vosk_dagon.wav"]  # 11 s, and 34 s (past one window)
# The target: within 1.5 points of the offline transcript (one word of these 116 is 0.9 points). Fed 0.5 s
# chunks synchronously, as here, the live transcript reads 2.6 % against the offline 2.6 % (docs/live.md).
WER_MARGIN = 0.015
CHUNK_SECONDS = 0.5

if not (MEDIA / "MANIFEST.json").is_file() or install_state(default_model_dir(), PACKS[TINY_EN]) != "installed":
    pytest.skip("needs ../shared/media and the offline Whisper pack", allow_module_level=True)


@cache
def runtime():
    return local_runtime(Settings(model_dir=default_model_dir(), device="cpu", memory_budget=4 * 1024**3))


def reference(clip: str) -> str:
    items = json.loads((MEDIA / "MANIFEST.json").read_text())["audio"]
    return next(item["transcript"] for item in items if item["path"] == clip)


@cache
def streamed(clip: str) -> tuple[str, int]:
    """The live transcript of `clip`, and how many times the committed words changed afterwards."""
    samples = load_audio(str(MEDIA / clip), max_seconds=60, target_rate=16_000).samples

    def step(buffer: np.ndarray, prompt: str, prefix: str, language: str | None) -> dict:
        return runtime().run("speech_live", {"model": TINY_EN, "samples": buffer, "prompt": prompt,
                                             "prefix": prefix, "language": language})

    committed: list[str] = []
    live = LiveTranscriber(step, LiveOptions(), on_commit=lambda words: committed.extend(w.text for w in words))
    rewritten, seen = 0, []
    size = int(CHUNK_SECONDS * 16_000)
    for start in range(0, len(samples), size):
        live.insert(samples[start:start + size])
        live.process()
        shown = [w.text for w in live.committed]
        rewritten += shown[:len(seen)] != seen
        seen = shown
    live.finish()
    return " ".join(committed), rewritten


@pytest.mark.parametrize("clip", CLIPS)
def test_committed_words_are_never_rewritten(clip):
    text, rewritten = streamed(clip)
    assert rewritten == 0 and len(text.split()) >= 15


def test_the_live_transcript_is_within_the_wer_bound_of_the_offline_one():
    offline = [runtime().run("speech", {"audio": str(MEDIA / clip), "model": TINY_EN})["text"] for clip in CLIPS]
    live = [streamed(clip)[0] for clip in CLIPS]
    references = [reference(clip) for clip in CLIPS]
    live_wer = corpus_wer(list(zip(references, live, strict=True)))
    offline_wer = corpus_wer(list(zip(references, offline, strict=True)))
    print(f"corpus WER: live {live_wer:.3f}, offline {offline_wer:.3f}; live: {live}")
    assert live_wer <= offline_wer + WER_MARGIN, live


def test_a_step_forces_the_committed_words_only_while_another_step_shares_the_cpu(monkeypatch):
    """Beside another live step the committed words start the transcript as given (not decoded again: cheaper); on
    its own a step decodes the whole buffer (it reads a little better). The prefix here is wrong on purpose."""
    monkeypatch.setattr(step_threads, "cores", lambda: 2)  # room for a second step, also on one core
    samples = load_audio(str(MEDIA / "audio/jfk.flac"), max_seconds=60, target_rate=16_000).samples[:8 * 16_000]
    raw = {"model": TINY_EN, "samples": samples, "prompt": "", "prefix": "And so, my fellow Africans,",
           "language": None}

    def words() -> list[str]:
        return [w["text"] for segment in runtime().run("speech_live", raw)["segments"] for w in segment["words"]]

    alone = words()
    with step_threads._slots.hold(2):  # another live step is running
        beside = words()
    assert beside[:5] == ["And", "so,", "my", "fellow", "Africans,"]
    assert [w.strip(",.").lower() for w in beside[5:9]] == ["ask", "not", "what", "your"]
    assert [w.strip(",.").lower() for w in alone[:5]] == ["and", "so", "my", "fellow", "americans"]
