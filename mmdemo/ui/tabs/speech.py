"""The speech-to-text tab."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from mmdemo import i18n
from mmdemo.runtime import Runtime
from mmdemo.tasks.speech.task import TIMESTAMP_MODES, whisper_languages
from mmdemo.tasks.speech.words import DEFAULT_CONFIDENCE
from mmdemo.ui.common import TabParts, asset, examples, model_dropdown, provenance_line, result_json, wire
from mmdemo.ui.i18n import t
from mmdemo.ui.language_hints import localized_table, relabel_on_load
from mmdemo.ui.tabs import speech_live
from mmdemo.ui.tabs.speech_live import WORDS_CSS, words_html

EXAMPLES = ["jfk.flac", "LJ050-0131.wav", "librispeech_61-70968-0002.wav"]
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "mmdemo-transcripts"
# A transcript's folder only stages its files: Gradio copies an output file into its own cache (which the app's
# delete_cache empties) before serving it. Folders go after an hour, and the oldest first beyond a count, so that a
# burst of requests cannot fill the disk.
KEEP_DOWNLOADS_SECONDS = 3600
MAX_DOWNLOAD_FOLDERS = 256
# The languages asked for most, named in the visitor's language in the language list; the others keep Whisper's
# English names.
NAMED_LANGUAGES = ("en", "zh", "yue", "ja", "ko", "fr", "de", "es", "ru", "pt", "it", "ar")
SEGMENT_HEADERS = ("speech.segments.start", "speech.segments.end", "speech.segments.text")  # catalogue keys


def _remove_old_downloads() -> None:
    """Remove folders older than KEEP_DOWNLOADS_SECONDS, then the oldest until one more fits MAX_DOWNLOAD_FOLDERS."""
    folders = []
    for folder in DOWNLOAD_ROOT.iterdir():
        try:
            folders.append((folder.stat().st_mtime, folder))
        except FileNotFoundError:  # removed meanwhile by another request
            continue
    folders.sort()
    cutoff = time.time() - KEEP_DOWNLOADS_SECONDS
    excess = len(folders) - (MAX_DOWNLOAD_FOLDERS - 1)
    for number, (mtime, folder) in enumerate(folders):
        if mtime < cutoff or number < excess:
            shutil.rmtree(folder, ignore_errors=True)


def write_downloads(result: dict[str, Any]) -> list[str]:
    """Write transcript.{txt,srt,vtt} into a fresh folder, after removing old folders (see MAX_DOWNLOAD_FOLDERS)."""
    DOWNLOAD_ROOT.mkdir(parents=True, exist_ok=True)
    _remove_old_downloads()
    folder = Path(tempfile.mkdtemp(dir=DOWNLOAD_ROOT))
    paths = []
    for fmt, text in result["downloads"].items():
        path = folder / f"transcript.{fmt}"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def subtitles(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The player's cues: the timed words when there are, else the segments."""
    timed = result.get("words") if result.get("words") and "start" in result["words"][0] else result["segments"]
    return [{"text": item["text"], "timestamp": [item["start"], item["end"]]} for item in timed]


def render(result: dict[str, Any] | None) -> tuple[Any, ...]:
    if not result:
        return "", segment_table(), None, "", "", gr.Audio(subtitles=None)
    rows = [[s["start"], s["end"], s["text"]] for s in result["segments"]]
    duration = i18n.text("speech.duration", seconds=result["duration"])
    note = f"{provenance_line(result)}<br><small>{duration}</small>"
    words = words_html(result.get("words") or [], [], result.get("confidence", DEFAULT_CONFIDENCE))
    cues = subtitles(result) or None
    return (result["text"] or i18n.text("speech.no_speech"), segment_table(rows), write_downloads(result), note,
            WORDS_CSS + words, gr.Audio(subtitles=cues))


def segment_table(rows: list[list[Any]] | None = None) -> pd.DataFrame:
    """The segments under headers in the visitor's language (a Dataframe's headers are written at run time)."""
    return localized_table(rows or [], SEGMENT_HEADERS)


def language_choices() -> list[tuple[Any, str]]:
    """Auto-detect first, then Whisper's languages by their English names; the common ones named for the visitor."""
    names = sorted((name.title(), code) for code, name in whisper_languages().items())
    return [(t("speech.language.auto"), "auto")] + [
        (t(f"speech.language.{code}") if code in NAMED_LANGUAGES else name, code) for name, code in names]


def build(runtime: Runtime) -> TabParts:
    with gr.Tabs(elem_id="speech-modes"):
        with gr.Tab(t("speech.mode.file"), id="speech-file", elem_id="speech-file-mode"):
            parts, confidence = _build_file_mode(runtime)
        with gr.Tab(t("speech.mode.live"), id="speech-live", elem_id="speech-live-mode"):
            gr.HTML(WORDS_CSS, padding=False)
            speech_live.build(runtime, confidence, DOWNLOAD_ROOT)
    return parts


def _build_file_mode(runtime: Runtime) -> tuple[TabParts, gr.Slider]:
    with gr.Row(equal_height=False):
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None,
                             label=t("tabs.speech"))
            examples("speech", [[asset(name)] for name in EXAMPLES], [audio])
            model = model_dropdown(runtime, "speech")
            with gr.Row():
                # Any value reaches the task, which reads codes and names and refuses others in one line (Gradio's
                # own check would list every language).
                language = gr.Dropdown(language_choices(), value="auto", label=t("speech.language"),
                                       allow_custom_value=True, scale=2)
                timestamps = gr.Radio([(t(f"speech.timestamps.{mode}"), mode) for mode in TIMESTAMP_MODES],
                                      value="segment", label=t("speech.timestamps"), scale=3)
            task = gr.Radio([(t("speech.task.transcribe"), "transcribe"), (t("speech.task.translate"), "translate")],
                            value="transcribe", label=t("speech.task"))
            button = gr.Button(t("speech.button"), variant="primary")
        with gr.Column():
            transcript = gr.Textbox(label=t("speech.transcript"), lines=3, buttons=["copy"], interactive=False,
                                    elem_id="speech-transcript")
            words = gr.HTML(label=t("speech.words"), elem_id="speech-words")
            confidence = gr.Slider(0.0, 1.0, value=DEFAULT_CONFIDENCE, step=0.05, label=t("speech.confidence"))
            # English headers until the page's load event writes them in the visitor's language (a Dataframe's
            # headers show no translation markers).
            segments = gr.Dataframe(segment_table(), label=t("speech.segments"), interactive=False, wrap=True,
                                    max_height=240, column_widths=["18%", "18%", "64%"])
            files = gr.File(label=t("speech.download"), file_count="multiple",
                            interactive=False, height=180, elem_id="speech-files")
            provenance = gr.Markdown(elem_id="speech-provenance")
            result = result_json()
    # New inputs go last: positional API calls written for the earlier inputs keep working.
    inputs = {"audio": audio, "model": model, "language": language, "task": task, "timestamps": timestamps,
              "confidence": confidence}
    parts = wire(runtime, "speech", button, inputs, result, render,
                 [transcript, segments, files, provenance, words, audio])
    relabel_on_load(segments, SEGMENT_HEADERS)
    parts.outputs["transcript"] = transcript
    return parts, confidence
