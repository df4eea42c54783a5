"""The speech tab's limits: transcript download folders are capped in count, and an unknown language is refused in
one line (through the API and through Runtime alike)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import mmdemo.tasks  # noqa: F401
from mmdemo.errors import InputError
from mmdemo.ui import build_demo
from mmdemo.ui.tabs import speech as speech_tab

JFK = str(Path(__file__).resolve().parents[1] / "assets" / "jfk.flac")
KLINGON = "Unknown language 'klingon': use a code or name such as en, de, fr, zh, ja or auto"
RESULT = {"downloads": {"txt": "ask not", "srt": "1\n00:00:00,000 --> 00:00:01,000\nask not\n", "vtt": "WEBVTT\n"}}


@pytest.fixture
def downloads(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "transcripts"
    monkeypatch.setattr(speech_tab, "DOWNLOAD_ROOT", root)
    return root


def age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(folder, (then, then))


def test_beyond_the_cap_the_oldest_folders_go_first(downloads):
    downloads.mkdir()
    cap = speech_tab.MAX_DOWNLOAD_FOLDERS
    earlier = []
    for number in range(cap):  # a full root, all within the hour, the first made the longest ago
        folder = downloads / f"earlier-{number:03d}"
        folder.mkdir()
        age(folder, 600 - number)
        earlier.append(folder)
    paths = speech_tab.write_downloads(RESULT)
    folders = set(downloads.iterdir())
    assert len(folders) == cap
    assert not earlier[0].exists() and set(earlier[1:]) <= folders  # only the oldest made room
    newest = Path(paths[0]).parent
    assert newest in folders
    assert {Path(p).name: Path(p).read_text(encoding="utf-8") for p in paths} == {
        f"transcript.{fmt}": text for fmt, text in RESULT["downloads"].items()}


def test_a_burst_of_transcripts_keeps_the_newest(downloads, monkeypatch):
    monkeypatch.setattr(speech_tab, "MAX_DOWNLOAD_FOLDERS", 3)
    written = []
    for number in range(7):
        folder = Path(speech_tab.write_downloads(RESULT)[0]).parent
        age(folder, 60 - number)  # the order in which they were made, whatever the clock's resolution
        written.append(folder)
    assert set(downloads.iterdir()) == set(written[-3:])
    assert all(len(list(folder.iterdir())) == 3 for folder in written[-3:])


def test_folders_past_their_hour_go_even_under_the_cap(downloads):
    downloads.mkdir()
    stale, fresh = downloads / "stale", downloads / "fresh"
    for folder in (stale, fresh):
        folder.mkdir()
    age(stale, speech_tab.KEEP_DOWNLOADS_SECONDS + 60)
    age(fresh, 60)
    newest = Path(speech_tab.write_downloads(RESULT)[0]).parent
    assert set(downloads.iterdir()) == {fresh, newest}


def test_an_unknown_language_is_one_line_from_runtime(tiny_runtime):
    with pytest.raises(InputError) as refused:
        tiny_runtime().run("speech", {"audio": JFK, "language": "klingon"})
    assert str(refused.value) == KLINGON


def test_an_unknown_language_is_one_line_through_the_api_and_names_work(tiny_runtime, launched):
    client = Client(launched(build_demo(tiny_runtime())), verbose=False)
    with pytest.raises(AppError) as refused:
        client.predict(audio=handle_file(JFK), model="openai/whisper-tiny", language="klingon", api_name="/speech")
    assert str(refused.value) == KLINGON
    # What the task reads reaches it: a language's name as well as its code.
    result = client.predict(audio=handle_file(JFK), model="openai/whisper-tiny", language="German",
                            timestamps="none", api_name="/speech")
    assert result["language"] == "de"
