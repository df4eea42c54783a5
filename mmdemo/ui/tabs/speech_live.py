"""The speech tab's Live mode: the microphone streams into mmdemo.tasks.speech.live, each step a Runtime.run.

Per visitor the state is a LiveSession in gr.State: the bounded policy state, plus the committed words appended to a
file so the full transcript can be downloaded at the end while memory holds only the last few hundred words. At most
`settings.max_live_streams` run at once; more are refused with one line. A stream ends when the visitor stops
recording, at `settings.live_max_seconds` (the stream's time limit), or, if the visitor leaves, when its slot is
reclaimed after StreamSlots.idle_seconds without a step.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from mmdemo import i18n
from mmdemo.errors import BusyError, VisitorError
from mmdemo.media.audio import describe_duration
from mmdemo.models.devices import on_zero_gpu
from mmdemo.runtime import Runtime
from mmdemo.tasks.speech.live import LiveOptions, LiveTranscriber, Word
from mmdemo.tasks.speech.live_input import ChunkConverter, StreamSlots
from mmdemo.tasks.speech.subtitles import FORMATS, render
from mmdemo.tasks.speech.words import DEFAULT_CONFIDENCE
from mmdemo.ui.common import model_dropdown
from mmdemo.ui.i18n import localized, message, t

log = logging.getLogger(__name__)

STREAM_EVERY = 0.5  # seconds between microphone chunks when the server keeps up (slower steps: larger chunks)
PREFERRED_MODEL = "openai/whisper-tiny.en"  # the fastest curated model: live lag matters more than the last word
CUE_CHARS = 42  # subtitle line length, as the file transcription's
DEFAULT_DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "mmdemo-live-transcripts"  # tests and other callers
LIVE = message("speech.live.name")  # what failed, in an unexpected failure's message


class LiveSession:
    """One visitor's live stream: the policy on a worker thread of its own, the microphone converter, the committed
    words' file, its slot.

    The stream handler only queues audio and reads the latest view, so it returns at once: Gradio hands a slow
    handler only the newest chunk, which would lose the audio in between. The worker decodes whenever a step is due,
    taking all the audio queued meanwhile (the policy's steps grow to the audio that arrived, as in the simulator).
    """

    def __init__(self, runtime: Runtime, model: str | None, download_root: Path) -> None:
        self.runtime, self.model = runtime, model
        self.converter = ChunkConverter()
        download_root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(dir=download_root))
        self.words_path = self.folder / "words.jsonl"
        self.transcriber = LiveTranscriber(self._step, LiveOptions(), on_commit=self._write)
        self.steps, self.compute, self.heard = 0, 0.0, 0.0
        self.closed = False  # no more audio is taken
        self.error: VisitorError | None = None  # a step's failure, shown by the next chunk in the visitor's language
        self.view: tuple[list[Word], list[Word]] = ([], [])  # committed (the kept ones) and tentative words
        self._incoming: deque[np.ndarray] = deque()
        self._wake = threading.Event()
        self._finishing = False
        self._worker = threading.Thread(target=self._work, name="live-transcription", daemon=True)
        self._worker.start()

    def add(self, samples: np.ndarray) -> None:
        """Queue 16 kHz samples for the worker (thread-safe, returns at once)."""
        self._incoming.append(samples)
        self.heard += len(samples) / 16_000
        self._wake.set()

    def finish(self, timeout: float = 120.0) -> None:
        """Decode what is left, commit it, and stop the worker; waits for it (up to `timeout` seconds)."""
        self._finishing = True
        self._wake.set()
        self._worker.join(timeout)
        self.closed = True

    def close(self) -> None:
        """Stop without finishing (the visitor left): the worker frees the audio state; the words' file stays."""
        self.closed = True
        self._wake.set()

    def _work(self) -> None:
        t = self.transcriber
        try:
            while not self.closed:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                while self._incoming:
                    t.insert(self._incoming.popleft())
                if self._finishing:
                    t.finish()
                    break
                t.process()
                self.view = (list(t.committed), list(t.tentative))
        except VisitorError as e:
            self.error = e
        except Exception as e:  # a step failed unexpectedly: say so on the page, keep the cause in the log
            log.exception("live transcription failed")
            self.error = VisitorError("error.unexpected", what=LIVE, error=type(e).__name__)
        finally:
            self.view = (list(t.committed), [])
            self.closed = True
            t.close()

    def _step(self, samples: np.ndarray, prompt: str, prefix: str, language: str | None) -> dict[str, Any]:
        began = time.perf_counter()
        result = self.runtime.run("speech_live", {"model": self.model, "samples": samples, "prompt": prompt,
                                                  "prefix": prefix, "language": language})
        self.steps += 1
        self.compute += time.perf_counter() - began
        return result

    def _write(self, words: list[Word]) -> None:
        with self.words_path.open("a", encoding="utf-8") as out:
            for w in words:
                out.write(json.dumps({"text": w.text, "probability": w.probability, "start": w.start,
                                      "end": w.end}) + "\n")

    def downloads(self) -> list[str]:
        """transcript.{txt,srt,vtt} of every committed word, next to the words' file."""
        words = []
        if self.words_path.exists():
            words = [json.loads(line) for line in self.words_path.read_text(encoding="utf-8").splitlines()]
        segments = cues(words)
        text = " ".join(w["text"] for w in words)
        paths = []
        for fmt in FORMATS:
            path = self.folder / f"transcript.{fmt}"
            path.write_text(render(fmt, text, segments), encoding="utf-8")
            paths.append(str(path))
        return paths


def cues(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subtitle cues from committed words: a new cue where Whisper's segment changes or the line is full."""
    segments: list[dict[str, Any]] = []
    for word in words:
        last = segments[-1] if segments else None
        if (last is not None and word["start"] == last["segment"]
                and len(last["text"]) + 1 + len(word["text"]) <= CUE_CHARS):
            last["text"] += " " + word["text"]
            last["end"] = max(last["end"], word["end"])
        else:
            start = max(word["start"], last["end"]) if last else word["start"]
            segments.append({"start": round(start, 3), "end": round(max(start, word["end"]), 3),
                             "text": word["text"], "segment": word["start"]})
    return [{key: s[key] for key in ("start", "end", "text")} for s in segments]


def _word(text: str, probability: float | None, threshold: float) -> str:
    """A word coloured by Whisper's probability for it: clear when sure, more orange the less sure, underlined
    under the threshold; the probability in its tooltip."""
    if probability is None:
        return html.escape(text)
    shade = round(0.55 * (1.0 - probability), 2)
    low = " mm-low" if probability < threshold else ""
    return (f'<span class="mm-word{low}" style="background: rgba(255, 140, 0, {shade})" '
            f'title="p = {probability:.2f}">{html.escape(text)}</span>')


def words_html(committed: list[Any], tentative: list[Any], threshold: float = DEFAULT_CONFIDENCE) -> str:
    """Committed words coloured by confidence, then the tentative tail in grey. Words are dicts or objects with
    `text` and `probability`."""
    def field(word: Any, name: str) -> Any:
        return word[name] if isinstance(word, dict) else getattr(word, name)

    threshold = DEFAULT_CONFIDENCE if threshold is None else float(threshold)
    sure = " ".join(_word(field(w, "text"), field(w, "probability"), threshold) for w in committed)
    unsure = html.escape(" ".join(field(w, "text") for w in tentative))
    tail = f' <span class="mm-tentative">{unsure}</span>' if unsure else ""
    legend = i18n.text("speech.words.legend", threshold=threshold)
    legend = f'<div class="mm-legend">{legend}</div>' if committed else ""
    return f'<div class="mm-words">{sure}{tail}</div>{legend}'


WORDS_CSS = """<style>
.mm-words { line-height: 1.9; font-size: 1rem; min-height: 2em; }
.mm-word { border-radius: 3px; padding: 1px 1px; }
.mm-low { text-decoration: underline wavy #c2410c; text-underline-offset: 3px; }
.mm-tentative { color: var(--body-text-color-subdued); font-style: italic; }
.mm-legend { font-size: 0.75rem; opacity: 0.7; }
</style>"""


def _status(session: LiveSession, note: str = "") -> str:
    committed = session.transcriber.committed_count
    mean = session.compute / session.steps if session.steps else 0.0
    line = i18n.text("speech.live.status", heard=describe_duration(session.heard),
                     words=i18n.text("speech.live.words.one" if committed == 1 else "speech.live.words", n=committed),
                     steps=i18n.text("speech.live.steps.one" if session.steps == 1 else "speech.live.steps",
                                     n=session.steps, mean=mean))
    line = f"<small>{line}</small>"
    return f"{line}<br>{note}" if note else line


class LiveStreams:
    """The Live mode's two handlers, for every visitor of one app: a microphone chunk, and the stop.

    Args:
        runtime: runs each step (`speech_live`); its settings give the time limit and the number of streams.
        download_root: where each stream's folder (its words, then its transcript files) goes.
        idle_seconds: a stream without a chunk for this long loses its slot to the next visitor who asks.
    """

    def __init__(self, runtime: Runtime, download_root: Path = DEFAULT_DOWNLOAD_ROOT,
                 idle_seconds: float = 30.0) -> None:
        self.runtime = runtime
        self.download_root = download_root
        self.max_seconds = runtime.settings.live_max_seconds
        self.limit = describe_duration(self.max_seconds)
        self.slots = StreamSlots(runtime.settings.max_live_streams, idle_seconds)

    # Both handlers speak the visitor's language and turn the app's errors into one line in it (`localized`).
    @localized(what=LIVE)
    def chunk(self, chunk: Any, session: LiveSession | None, model_id: str | None,
              threshold: float = DEFAULT_CONFIDENCE) -> tuple[Any, ...]:
        """Queue a chunk for the visitor's stream (starting one if needed); (state, transcript HTML, status)."""
        if session is not None and session.closed:  # past the time limit, failed or reclaimed: wait for the stop
            return session, gr.skip(), gr.skip()
        if session is None:
            if chunk is None:  # the browser sent nothing
                return session, gr.skip(), gr.skip()
            session = LiveSession(self.runtime, model_id, self.download_root)
            if not self.slots.acquire(session):
                session.close()
                raise BusyError("error.speech_live.busy", capacity=self.slots.capacity)
        else:
            self.slots.acquire(session)  # marks it active (it holds its slot)
        try:
            samples = session.converter.convert(chunk)
        except VisitorError:
            session.close()
            self.slots.release(session)
            raise
        room = max(0, int((self.max_seconds - session.heard) * 16_000))
        session.add(samples[:room])
        if session.error:
            raise session.error
        if len(samples) > room:  # the time limit: finish here (the stream's own limit stops the browser)
            session.finish()
            self.slots.release(session)
            note = i18n.text("speech.live.time_limit", limit=self.limit)
            return session, words_html(session.view[0], [], threshold), _status(session, note)
        committed, tentative = session.view
        return session, words_html(committed, tentative, threshold), _status(session)

    @localized(what=LIVE)
    def stop(self, session: LiveSession | None, threshold: float = DEFAULT_CONFIDENCE) -> tuple[Any, ...]:
        """Finish the stream; (state, transcript HTML, status, the transcript files)."""
        if session is None:
            return None, gr.skip(), gr.skip(), None
        session.finish()
        self.slots.release(session)
        note = session.error.render() if session.error else i18n.text("speech.live.stopped")
        return None, words_html(session.view[0], [], threshold), _status(session, note), session.downloads()


def live_default_is_preferred(runtime: Runtime) -> bool:
    """Whether Live starts on PREFERRED_MODEL rather than the speech tab's default: wherever it can load (here
    already, or from the hub)."""
    return any(c.spec.id == PREFERRED_MODEL and (c.available_offline or runtime.hub_reachable())
               for c in runtime.model_choices("speech"))


def build(runtime: Runtime, confidence: gr.Slider, download_root: Path) -> LiveStreams:
    """The Live mode's components and events (no API endpoint: a stream is a browser's microphone); the transcript
    files go into folders under `download_root` (the file mode's, which removes old folders)."""
    settings = runtime.settings
    streams = LiveStreams(runtime, download_root)
    zero_gpu = on_zero_gpu()
    gr.Markdown(t("speech.live.lead", limit=streams.limit) if not zero_gpu else t("speech.live.zero_gpu"),
                elem_classes="mm-lead")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            microphone = gr.Audio(sources=["microphone"], type="numpy", streaming=True,
                                  label=t("speech.live.microphone"), elem_id="speech-live-audio",
                                  interactive=not zero_gpu)
            model = model_dropdown(runtime, "speech")
            model.elem_id = "speech-live-model"
            if live_default_is_preferred(runtime):
                model.value = PREFERRED_MODEL
        with gr.Column(scale=3):
            transcript = gr.HTML(label=t("speech.live.transcript"), elem_id="speech-live-transcript",
                                 value=t("speech.live.press_record"))
            status = gr.Markdown(elem_id="speech-live-status")
            files = gr.File(label=t("speech.download"), file_count="multiple",
                            interactive=False, height=140, elem_id="speech-live-files")
    state = gr.State(None)
    microphone.stream(streams.chunk, inputs=[microphone, state, model, confidence],
                      outputs=[state, transcript, status], stream_every=STREAM_EVERY,
                      time_limit=int(settings.live_max_seconds), concurrency_limit=None, concurrency_id="live",
                      api_visibility="private", show_progress="hidden")
    microphone.stop_recording(streams.stop, inputs=[state, confidence], outputs=[state, transcript, status, files],
                              api_visibility="private", concurrency_limit=None, concurrency_id="live")
    return streams
