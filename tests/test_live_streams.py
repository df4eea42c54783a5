"""The Live mode's handlers (mmdemo.ui.tabs.speech_live.LiveStreams) on bad streams: nothing sent, 8 kHz and 48 kHz
stereo, past the time limit, a visitor who leaves mid-stream, 20 streams at once; and the transcript files.

The steps run on a stand-in runtime that returns a fixed hypothesis (the real VAD still decides when to decode, on
real speech); tests/test_browser_live.py drives the real thing in a browser.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from mmdemo.config import Settings
from mmdemo.media import load_audio
from mmdemo.ui.tabs.speech_live import LiveStreams, cues

JFK = Path(__file__).resolve().parents[1] / "assets" / "jfk.flac"
RATE = 16_000


class StandInRuntime:
    """Runtime.run for `speech_live` only: every buffer says the same three words, one segment per call."""

    def __init__(self, **settings) -> None:
        self.settings = Settings(**settings)
        self.calls = 0

    def run(self, task_name: str, raw: dict) -> dict:
        assert task_name == "speech_live" and raw["samples"].dtype == np.float32
        self.calls += 1
        seconds = len(raw["samples"]) / RATE
        words = [{"text": w, "probability": p} for w, p in (("ask", 0.9), ("not", 0.3), ("what", 0.8))]
        return {"language": "en", "segments": [{"start": 0.0, "end": seconds, "words": words}]}


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(str(JFK), max_seconds=60, target_rate=RATE).samples


def chunks(samples: np.ndarray, rate: int, seconds: float = 0.5, channels: int = 1):
    """(rate, int16 samples) chunks as gr.Audio(type="numpy") streams them, resampled to `rate`."""
    import soxr

    audio = soxr.resample(samples, RATE, rate) if rate != RATE else samples
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    if channels > 1:
        pcm = np.stack([pcm] * channels, axis=1)
    step = int(seconds * rate)
    for start in range(0, len(pcm), step):
        yield rate, pcm[start:start + step]


def stream_all(streams: LiveStreams, pieces, session=None):
    for chunk in pieces:
        session, _, status = streams.chunk(chunk, session, "openai/whisper-tiny.en")
    return session


def test_a_stream_that_sends_nothing_starts_nothing():
    streams = LiveStreams(StandInRuntime())
    session, transcript, status = streams.chunk(None, None, "openai/whisper-tiny.en")
    assert session is None and len(streams.slots) == 0
    assert streams.stop(None)[0] is None


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (48_000, 2)])
def test_8_khz_and_48_khz_stereo_streams_are_heard_in_full_and_transcribed(speech, rate, channels):
    runtime = StandInRuntime()
    streams = LiveStreams(runtime)
    session = stream_all(streams, chunks(speech, rate, channels=channels))
    assert session.heard == pytest.approx(len(speech) / RATE, abs=0.2)  # the resampler holds back a little
    state, html, status, files = streams.stop(session)
    assert state is None and runtime.calls > 0
    assert "ask" in html and "mm-low" in html  # "not" (0.3) is marked under the default threshold
    assert len(streams.slots) == 0
    texts = {Path(f).suffix: Path(f).read_text() for f in files}
    assert set(texts) == {".txt", ".srt", ".vtt"} and "ask" in texts[".txt"]
    assert texts[".vtt"].startswith("WEBVTT") and " --> " in texts[".srt"]


def test_a_stream_past_the_time_limit_is_finished_and_its_slot_freed(speech):
    streams = LiveStreams(StandInRuntime(live_max_seconds=3.0))
    session = None
    statuses = []
    for chunk in chunks(speech, RATE):
        session, _, status = streams.chunk(chunk, session, None)
        statuses.append(status)
    assert session.closed and session.heard == pytest.approx(3.0, abs=0.01)
    assert any("stops after 3 s" in str(s) for s in statuses)
    assert len(streams.slots) == 0
    assert streams.chunk(next(chunks(speech, RATE)), session, None)[0] is session  # later chunks are ignored
    assert session.heard == pytest.approx(3.0, abs=0.01)


def test_a_visitor_who_leaves_mid_stream_loses_the_slot_and_the_audio_is_freed(speech):
    streams = LiveStreams(StandInRuntime(max_live_streams=1), idle_seconds=0.5)
    gone = stream_all(streams, list(chunks(speech, RATE))[:6])  # 3 s, then the tab is closed: no stop
    assert len(streams.slots) == 1
    time.sleep(0.7)
    newcomer = stream_all(streams, list(chunks(speech, RATE))[:2])
    assert newcomer is not None and not newcomer.closed
    gone._worker.join(timeout=10)
    assert gone.closed and not gone._worker.is_alive() and len(gone.transcriber.buffer) == 0
    streams.stop(newcomer)


def test_twenty_streams_at_once_run_four_and_refuse_the_rest_in_one_line(speech):
    streams = LiveStreams(StandInRuntime(max_live_streams=4))
    first = next(chunks(speech, RATE))
    admitted, refused = [], []
    for _ in range(20):
        try:
            admitted.append(streams.chunk(first, None, None)[0])
        except gr.Error as e:
            refused.append(str(e))
    assert len(admitted) == 4 and len(refused) == 16
    assert all("busy (4 streams at once)" in message for message in refused)
    for session in admitted:
        streams.stop(session)
    assert len(streams.slots) == 0
    assert streams.chunk(first, None, None)[0] is not None  # room again


def test_a_bad_chunk_is_refused_in_one_line_and_frees_the_slot():
    streams = LiveStreams(StandInRuntime())
    with pytest.raises(gr.Error, match="sample rate 100 Hz"):
        streams.chunk((100, np.zeros(100, dtype=np.int16)), None, None)
    assert len(streams.slots) == 0


def test_cues_follow_whisper_segments_and_line_length():
    words = [{"text": w, "start": 0.0, "end": 2.0} for w in ("one", "two")]
    words += [{"text": "three", "start": 2.5, "end": 4.0}]
    words += [{"text": "x" * 30, "start": 2.5, "end": 4.0}, {"text": "y" * 30, "start": 2.5, "end": 4.0}]
    assert [(c["start"], c["end"], c["text"]) for c in cues(words)] == [
        (0.0, 2.0, "one two"), (2.5, 4.0, "three " + "x" * 30), (4.0, 4.0, "y" * 30)]


def test_live_settings_come_from_the_environment():
    from mmdemo.config import settings_from_env

    settings = settings_from_env({"MMDEMO_LIVE_MAX_SECONDS": "90", "MMDEMO_MAX_LIVE_STREAMS": "2"})
    streams = LiveStreams(SimpleNamespace(settings=settings))
    assert streams.max_seconds == 90 and streams.slots.capacity == 2 and streams.limit == "1 min 30 s"


def test_live_starts_on_tiny_en_wherever_it_can_load(tiny_runtime, monkeypatch):
    from mmdemo.ui.tabs.speech_live import live_default_is_preferred

    runtime = tiny_runtime()
    monkeypatch.setattr(runtime, "hub_reachable", lambda: False)
    monkeypatch.setattr(runtime.locator, "is_local", lambda model_id: model_id == "openai/whisper-tiny.en")
    assert live_default_is_preferred(runtime)  # installed here (the offline pack)
    monkeypatch.setattr(runtime.locator, "is_local", lambda model_id: False)
    assert not live_default_is_preferred(runtime)  # nowhere to load it from: the tab's default stays
    monkeypatch.setattr(runtime, "hub_reachable", lambda: True)
    assert live_default_is_preferred(runtime)  # not downloaded yet, but the hub has it
