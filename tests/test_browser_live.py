"""Live mode as a visitor sees it: Chromium's fake microphone plays a real clip into the speech tab's Live mode,
and its words must appear while the clip is still playing; stopping gives the transcript files.

Needs Debian's Chromium and the offline Whisper pack (real tiny.en: random weights would say nothing checkable).
With MMDEMO_UPDATE_DOCS_SCREENSHOTS=1 the screenshot also goes to docs/screenshot-live.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import Settings, default_model_dir
from mmdemo.media import load_audio
from mmdemo.offline.packs import PACKS, install_state
from mmdemo.ui import STYLE, build_demo

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
ARTIFACTS = REPO / "artifacts" / "screenshots"
DOCS = REPO / "docs"
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WHISPER = "openai/whisper-tiny.en"
CLIP = "audio/jfk.flac"
LEAD_SECONDS = 1.0  # silence before the speech (the capture starts with it)

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium", allow_module_level=True)
if not (MEDIA / CLIP).is_file() or install_state(default_model_dir(), PACKS[WHISPER]) != "installed":
    pytest.skip("needs ../shared/media and the offline Whisper pack (python -m mmdemo.models install-offline)",
                allow_module_level=True)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory) -> tuple[Path, float]:
    """The clip at 48 kHz 16-bit (a browser's usual capture), after a second of silence and before six: its path
    and when its speech ends, in seconds from the capture's start."""
    speech = load_audio(str(MEDIA / CLIP), max_seconds=60, target_rate=48_000).samples
    audio = np.concatenate([np.zeros(int(LEAD_SECONDS * 48_000)), speech, np.zeros(6 * 48_000)])
    path = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    soundfile.write(path, audio.astype(np.float32), 48_000, subtype="PCM_16")
    return path, LEAD_SECONDS + len(speech) / 48_000


@pytest.fixture(scope="module")
def page(fake_microphone, launched) -> Iterator[Page]:
    runtime = local_runtime(Settings(model_dir=default_model_dir(), memory_budget=4 * 1024**3, device="cpu"))
    runtime.preload("speech_live", WHISPER)  # the first step should not wait for the model to load
    url = launched(build_demo(runtime), **STYLE)
    wav, _ = fake_microphone
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["microphone"])
        page = context.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(url)
        expect(page.locator("#vqa-run")).to_be_visible()
        try:
            yield page
        finally:
            browser.close()


def transcript_text(page: Page) -> str:
    return page.locator("#speech-live-transcript .mm-words").inner_text()


def test_words_appear_while_the_clip_plays_and_stopping_gives_the_transcript(page, fake_microphone):
    reference = next(item["transcript"] for item in json.loads((MEDIA / "MANIFEST.json").read_text())["audio"]
                     if item["path"] == CLIP)
    _, speech_end = fake_microphone
    page.get_by_role("tab", name="Speech to text").click()
    page.get_by_role("tab", name="Live (microphone)").click()
    audio = page.locator("#speech-live-audio")
    audio.get_by_role("button", name=re.compile("record", re.IGNORECASE)).first.click()
    started = time.monotonic()
    expected = set(words(reference))
    first_words = None
    while time.monotonic() - started < speech_end + 20:
        shown = set(words(transcript_text(page))) & expected
        if shown and first_words is None:
            first_words = time.monotonic() - started
        if len(shown) >= 0.5 * len(expected):
            break
        time.sleep(0.2)
    assert first_words is not None, f"no word of the clip appeared; the page shows {transcript_text(page)!r}"
    # The capture starts about when the button is pressed: the first words must show before the speech ends.
    assert first_words < speech_end, f"first words after {first_words:.1f} s; the speech ends at {speech_end:.1f} s"
    time.sleep(max(0.0, speech_end + 2.5 - (time.monotonic() - started)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "live.png"
    page.screenshot(path=shot)
    if os.environ.get("MMDEMO_UPDATE_DOCS_SCREENSHOTS") == "1":
        Image.open(shot).convert("RGB").quantize(256).save(DOCS / "screenshot-live.png", optimize=True)
    audio.get_by_role("button", name=re.compile("stop", re.IGNORECASE)).first.click()
    links = page.locator("#speech-live-files a")
    expect(links).to_have_count(3)
    text = transcript_text(page)
    said = set(words(text))
    recall = sum(word in said for word in words(reference)) / len(words(reference))
    # Not word for word: on a loaded machine Gradio drops some 0.1 s microphone chunks (docs/live.md).
    assert recall >= 0.5, text
    status = page.locator("#speech-live-status").inner_text()
    heard = float(re.search(r"([\d.]+) s heard", status).group(1))
    print(f"first words after {first_words:.1f} s; {heard:.1f} s of audio heard of {speech_end + 2.5:.1f} s played; "
          f"transcript: {text}")
    assert heard >= 0.5 * speech_end, status
