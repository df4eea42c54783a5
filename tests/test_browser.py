"""The demo as a visitor sees it: every tab driven in headless Chromium (Playwright) against the app on localhost.

The app runs on the tiny random-weight checkpoints (real structures, nonsense words), except that the real
Whisper of the offline pack takes the tiny Whisper's place where `python -m mmdemo.models list-offline` reports it
installed; then transcripts are checked against the clips' reference text. Every tab is screenshotted after a run
into artifacts/screenshots/; MMDEMO_UPDATE_DOCS_SCREENSHOTS=1 also refreshes the README's copies in docs/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

import mmdemo.models.loader
import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import Settings, default_model_dir
from mmdemo.media import NOT_AN_IMAGE
from mmdemo.offline import packs as offline_pack
from mmdemo.tasks.sentiment.task import NO_INPUT
from mmdemo.ui import STYLE, build_demo

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
SHARED_MEDIA = REPO.parent / "shared" / "media"
ARTIFACTS = REPO / "artifacts" / "screenshots"
DOCS = REPO / "docs"
UPDATE_DOCS = os.environ.get("MMDEMO_UPDATE_DOCS_SCREENSHOTS") == "1"

# Debian's Chromium, which scripts/test.sh installs; Playwright's own browser download is not used.
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 400, "height": 800}
RUN_TIMEOUT_MS = 90_000  # a first use loads the model; on 2 busy cores that can take a while
WAIT_MS = 30_000  # for the page to show something (an example's first load copies its files; busy cores)

WHISPER = "openai/whisper-tiny.en"  # the fastest Whisper of the offline pack


def shared_media(relative: str, fallback: str) -> Path:
    """A real third-party file from ../shared/media, or the asset `fallback` where that folder is absent."""
    path = SHARED_MEDIA / relative
    return path if path.is_file() else ASSETS / fallback


def reference_transcript(name: str) -> str | None:
    manifest = SHARED_MEDIA / "MANIFEST.json"
    if not manifest.is_file():
        return None
    for item in json.loads(manifest.read_text())["audio"]:
        if item["path"] == f"audio/{name}":
            return item.get("transcript")
    return None


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def recall(reference: str, transcript: str) -> float:
    """Share of the reference's words found in the transcript (tolerant to punctuation and the odd miss)."""
    said = set(words(transcript))
    expected = words(reference)
    return sum(word in said for word in expected) / len(expected)



# ---------------------------------------------------------------- the app and the browser


def installed_whisper() -> dict[str, Path]:
    """Model id -> directory of each offline Whisper pack installed in the default model dir."""
    root = default_model_dir()
    return {model_id: root.joinpath(*model_id.split("/")) for model_id, pack in offline_pack.PACKS.items()
            if offline_pack.install_state(root, pack) == "installed"}


@pytest.fixture(scope="module")
def real_whisper() -> dict[str, Path]:
    return installed_whisper()


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, real_whisper: dict[str, Path], tmp_path_factory) -> Path:
    """The tiny checkpoints as links, with the installed real Whisper checkpoints in place of the tiny ones."""
    root = tmp_path_factory.mktemp("models")
    for checkpoint in sorted(tiny_model_dir.glob("*/*")):
        link = root / checkpoint.parent.name / checkpoint.name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(checkpoint, target_is_directory=True)
    for model_id, path in real_whisper.items():
        link = root.joinpath(*model_id.split("/"))
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(path, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def app_url(model_dir: Path, launched) -> str:
    runtime = local_runtime(Settings(model_dir=model_dir, memory_budget=4 * 1024**3, device="cpu", model_admin="on"))
    return launched(build_demo(runtime), **STYLE)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_app(browser: Browser, url: str, viewport: dict[str, int]) -> Page:
    expect.set_options(timeout=WAIT_MS)
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    expect(page.locator("#vqa-run")).to_be_visible()
    return page


@pytest.fixture(scope="module")
def page(browser: Browser, app_url: str) -> Iterator[Page]:
    """One visitor's page for the tab tests (loading the app costs seconds): each test opens its own tab."""
    page = open_app(browser, app_url, LAPTOP)
    try:
        yield page
    finally:
        page.context.close()


@pytest.fixture
def slow_git_load(monkeypatch) -> str:
    """Loading microsoft/git-base-coco takes 2 s longer: time to see the page say it is loading."""
    load_bundle = mmdemo.models.loader.load_bundle

    def slow(path, *args, **kwargs):
        if Path(path).name == "git-base-coco":
            time.sleep(2)
        return load_bundle(path, *args, **kwargs)

    monkeypatch.setattr(mmdemo.models.loader, "load_bundle", slow)
    return "microsoft/git-base-coco"


# ---------------------------------------------------------------- what a visitor does


def open_tab(page: Page, title: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_role("tab", name=title).click()


def pick_example(page: Page, task: str, example: str | int, *, shows: str) -> None:
    """Click the example whose row shows the text `example` (or the example at that index, when it shows only
    a thumbnail); wait until it has filled the input `shows` (a selector)."""
    examples = page.locator(f"#{task}-examples")
    if isinstance(example, int):
        examples.locator("img").nth(example).click()
    else:
        examples.get_by_text(example, exact=True).click()
    expect(page.locator(shows)).to_be_visible()


def upload(page: Page, elem_id: str, path: Path, *, shows: str) -> None:
    """Upload `path` through the component's own file input; wait until the component shows it."""
    page.locator(f"#{elem_id} input[type=file]").set_input_files(path)
    expect(page.locator(shows)).to_be_visible()


def showing_image(elem_id: str, path: str | Path) -> str:
    """Selector of the image component once it shows the file called like `path` (uploads keep their name)."""
    return f"#{elem_id} img[src*='{Path(path).name}']"


def clear_audio(page: Page, elem_id: str) -> None:
    """Remove the loaded recording (the file input comes back), as a visitor does before giving another."""
    page.locator(f"#{elem_id} button[aria-label=Clear]").click()
    expect(page.locator(f"#{elem_id} input[type=file]")).to_be_attached()


def expect_audio_loaded(page: Page, elem_id: str, path: str | Path) -> None:
    """The audio component holds the file called like `path`: its Download link points at it. (Its waveform may
    fall back to the browser's own player on a busy machine, so the link is what tells.)"""
    expect(page.locator(f"#{elem_id} a[href*='{Path(path).name}']")).to_be_attached()


def choose(page: Page, elem_id: str, option: str) -> None:
    """Pick the option whose text contains `option` from the dropdown's own list."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    options = page.locator(f"#{box.get_attribute('aria-controls')}")
    options.get_by_role("option", name=option).click()
    expect(box).to_have_value(re.compile(re.escape(option)))
    expect(box).to_have_attribute("aria-expanded", "false")


def run(page: Page, task: str, *, meanwhile: Callable[[], None] | None = None) -> None:
    """Press the tab's button and wait for the run's page update (its result rendered, or cleared on error);
    `meanwhile` checks the page while the run is going on."""
    with page.expect_response(lambda response: "/gradio_api/run/predict" in response.url, timeout=RUN_TIMEOUT_MS):
        page.locator(f"#{task}-run").click()
        if meanwhile:
            meanwhile()


def expect_error(page: Page, message: str) -> None:
    """The error toast says `message`; then it is closed, as a visitor would."""
    toast = page.get_by_test_id("toast-body").filter(has_text=message)
    expect(toast).to_be_visible()
    expect(toast.get_by_test_id("toast-text")).to_contain_text(message)
    toast.get_by_test_id("toast-close").click()
    expect(toast).to_have_count(0)


def label_names(page: Page, elem_id: str) -> list[str]:
    """The classes a gr.Label shows, in its order (best first)."""
    return page.locator(f"#{elem_id} dt").all_inner_texts()


def table_rows(page: Page, elem_id: str) -> list[list[str]]:
    """The body rows of a gr.Dataframe (Gradio 6 draws them as role=row elements after the header row)."""
    rows = page.locator(f"#{elem_id} [role=row]:not([aria-rowindex='1'])")
    return [[cell.strip() for cell in row.locator("[role=gridcell]").all_inner_texts()] for row in rows.all()]


def expect_fits_laptop(page: Page, task: str) -> None:
    """The examples and the Run button are on a 1280×800 screen without scrolling."""
    for selector in (f"#{task}-examples", f"#{task}-run"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] + box["height"] <= LAPTOP["height"], f"{selector} is below the fold"


def screenshot(page: Page, name: str, *, docs_name: str | None = None, full_page: bool = False) -> Path:
    """Save artifacts/screenshots/<name>.png; with MMDEMO_UPDATE_DOCS_SCREENSHOTS=1 also docs/screenshot-<name>.png
    (and `docs_name`), reduced to 256 colours to keep the repository small."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.screenshot(path=path, full_page=full_page)
    if UPDATE_DOCS:
        DOCS.mkdir(exist_ok=True)
        small = Image.open(path).convert("RGB").quantize(256)
        for target in filter(None, (f"screenshot-{name}.png", docs_name)):
            small.save(DOCS / target, optimize=True)
    return path


# ---------------------------------------------------------------- the tabs


def test_vqa_tab(page):
    open_tab(page, "Visual question answering")
    expect_fits_laptop(page, "vqa")
    run(page, "vqa")
    expect_error(page, "No image: upload an image or pick an example")

    pick_example(page, "vqa", "What animal is this?", shows=showing_image("vqa-image", "skimage_chelsea.png"))
    expect(page.locator("#vqa-question textarea")).to_have_value("What animal is this?")
    choose(page, "vqa-model", "dandelin/vilt-b32-finetuned-vqa")  # ViLT ranks its answer vocabulary
    run(page, "vqa")
    expect(page.locator("#vqa-answer dt")).to_have_count(5)
    expect(page.locator("#vqa-provenance")).to_contain_text("dandelin/vilt-b32-finetuned-vqa")
    screenshot(page, "vqa")

    page.locator("#vqa-question textarea").fill(" ")
    run(page, "vqa")
    expect_error(page, "Question is empty")
    expect(page.locator("#vqa-answer dt")).to_have_count(0)  # no stale answer next to the error

    cats = shared_media("images/coco_000000039769.png", "skimage_camera.png")
    upload(page, "vqa-image", cats, shows=showing_image("vqa-image", cats))
    page.locator("#vqa-question textarea").fill("How many cats are there?")
    choose(page, "vqa-model", "Salesforce/blip-vqa-base")  # BLIP writes one free-text answer
    run(page, "vqa")
    expect(page.locator("#vqa-provenance")).to_contain_text("Salesforce/blip-vqa-base")
    expect(page.locator("#vqa-answer").get_by_test_id("label-output-value")).to_have_text(re.compile(r"\w"))
    expect(page.locator("#vqa-answer dt")).to_have_count(0)  # one free-text answer, no ranked list


def test_captioning_tab(page, tmp_path, slow_git_load):
    open_tab(page, "Image captioning")
    expect_fits_laptop(page, "captioning")
    fake = tmp_path / "holiday.png"
    fake.write_text("this is a text file, not a picture")
    page.locator("#captioning-image input[type=file]").set_input_files(fake)
    run(page, "captioning")
    expect_error(page, NOT_AN_IMAGE)

    rocket = showing_image("captioning-image", "skimage_rocket.jpg")
    pick_example(page, "captioning", 1, shows=rocket)  # the rocket, with the start of a caption
    prefix = page.locator("#captioning-prefix input, #captioning-prefix textarea").first
    expect(prefix).to_have_value("a photography of")
    decoding_options = page.locator("#captioning-tab").get_by_text("Decoding options")
    decoding_options.click()
    page.locator("#captioning-mode").get_by_label("Nucleus sampling").check()
    page.locator("#captioning-num_captions input[type=number]").fill("2")
    page.locator("#captioning-num_captions input[type=number]").press("Enter")
    decoding_options.click()  # folded again for the screenshot
    run(page, "captioning")
    captions = page.locator("#captioning-captions textarea")
    expect(captions).not_to_have_value("")
    lines = [re.sub(r"^\d+\. ", "", line) for line in captions.input_value().splitlines()]
    assert 1 <= len(lines) <= 2
    assert all(line.startswith("a photography of") for line in lines), lines  # the prefix steers every caption
    screenshot(page, "captioning")

    merlion = shared_media("images/merlion.jpg", "skimage_camera.png")
    upload(page, "captioning-image", merlion, shows=showing_image("captioning-image", merlion))
    prefix.fill("")
    decoding_options.click()
    page.locator("#captioning-mode").get_by_label("Beam search").check()
    choose(page, "captioning-model", slow_git_load)  # not loaded yet: the page says so while it loads
    loading = f"Loading {slow_git_load}… (first use of this model)"
    run(page, "captioning", meanwhile=lambda: expect(page.locator("#captioning-tab")).to_contain_text(loading))
    expect(captions).not_to_have_value("")
    expect(page.locator("#captioning-provenance")).to_contain_text(slow_git_load)
    expect(page.locator("#captioning-tab")).not_to_contain_text(loading)


def test_zero_shot_tab(page):
    open_tab(page, "Zero-shot classification")
    expect_fits_laptop(page, "zero_shot")
    pick_example(page, "zero_shot", "cat, dog, rabbit, tiger",
                 shows=showing_image("zero_shot-image", "skimage_chelsea.png"))
    labels = page.locator("#zero_shot-labels textarea")
    labels.fill("cat")
    run(page, "zero_shot")
    expect_error(page, "at least 2 different labels")

    labels.fill("cat, dog, bird")
    run(page, "zero_shot")
    expect(page.locator("#zero_shot-scores dt")).to_have_count(3)
    assert sorted(label_names(page, "zero_shot-scores")) == ["bird", "cat", "dog"]
    expect(page.locator("#zero_shot-provenance")).to_contain_text("they sum to 1")
    screenshot(page, "zero_shot")

    dog = shared_media("images/darknet_dog.jpg", "skimage_camera.png")
    upload(page, "zero_shot-image", dog, shows=showing_image("zero_shot-image", dog))
    labels.fill("dog\nhorse\neagle\ngiraffe\ndog")  # one per line; the repeated dog is dropped
    page.locator("#zero_shot-tab").get_by_text("Prompt template").click()
    page.locator("#zero_shot-ensemble input[type=checkbox]").check()
    run(page, "zero_shot")
    expect(page.locator("#zero_shot-scores dt")).to_have_count(4)
    assert sorted(label_names(page, "zero_shot-scores")) == ["dog", "eagle", "giraffe", "horse"]


def test_speech_tab(page, tmp_path, real_whisper):
    open_tab(page, "Speech to text")
    expect_fits_laptop(page, "speech")
    page.locator("#speech-examples").get_by_text("jfk.flac", exact=True).click()
    expect_audio_loaded(page, "speech-audio", "jfk.flac")
    choose(page, "speech-model", WHISPER)
    choose(page, "speech-language", "English")
    run(page, "speech")
    transcript = page.locator("#speech-transcript textarea")
    expect(transcript).not_to_have_value("")
    if WHISPER in real_whisper:
        reference = reference_transcript("jfk.flac") or "ask not what your country can do for you"
        assert recall(reference, transcript.input_value()) >= 0.8, transcript.input_value()
    links = page.locator("#speech-files a")
    expect(links).to_have_count(3)
    srt = next(link for link in links.all() if (link.get_attribute("href") or "").endswith(".srt"))
    body = page.request.get(srt.get_attribute("href")).text()  # what the download link serves
    assert "-->" in body and body.lstrip().startswith("1")
    screenshot(page, "speech", docs_name="screenshot.png")  # the README top image (real Whisper with the pack)

    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(16_000, dtype=np.int16), 16_000)
    clear_audio(page, "speech-audio")
    page.locator("#speech-audio input[type=file]").set_input_files(silent)
    expect_audio_loaded(page, "speech-audio", silent)
    run(page, "speech")
    expect_error(page, "silent")
    expect(transcript).to_have_value("")  # the old transcript is gone with the error

    clip = shared_media("audio/arctic_a0024.wav", "LJ050-0131.wav")
    clear_audio(page, "speech-audio")
    page.locator("#speech-audio input[type=file]").set_input_files(clip)
    expect_audio_loaded(page, "speech-audio", clip)
    run(page, "speech")
    expect(transcript).not_to_have_value("")
    reference = reference_transcript(clip.name)
    if WHISPER in real_whisper and reference:
        assert recall(reference, transcript.input_value()) >= 0.7, transcript.input_value()


SENTIMENT_ROWS = "#sentiment-table [role=row]:not([aria-rowindex='1'])"


def test_sentiment_tab(page):
    open_tab(page, "Multimodal sentiment")
    expect_fits_laptop(page, "sentiment")
    run(page, "sentiment")
    expect_error(page, NO_INPUT)

    pick_example(page, "sentiment", "What a wonderful, sunny day with my cat!",
                 shows=showing_image("sentiment-image", "skimage_chelsea.png"))
    page.locator("#sentiment-method").get_by_label("Product of experts").check()
    run(page, "sentiment")
    expect(page.locator("#sentiment-fused dt")).to_have_count(3)
    assert sorted(label_names(page, "sentiment-fused")) == ["negative", "neutral", "positive"]
    expect(page.locator("#sentiment-tab")).to_contain_text("Product of experts")
    expect(page.locator(SENTIMENT_ROWS)).to_have_count(2)
    assert [row[0] for row in table_rows(page, "sentiment-table")] == ["text", "image"]
    expect(page.locator("#sentiment-chart canvas, #sentiment-chart svg").first).to_be_visible()
    screenshot(page, "sentiment", full_page=True)  # the chart and table under the verdict too

    page.locator("#sentiment-text textarea, #sentiment-text input").first.fill("I hate waiting in the cold rain.")
    dog = shared_media("images/darknet_dog.jpg", "skimage_camera.png")
    upload(page, "sentiment-image", dog, shows=showing_image("sentiment-image", dog))
    page.locator("#sentiment-tab").get_by_text("Weights, models and image prompts").click()
    choose(page, "sentiment-text_model", "vader")  # the lexicon: real sentiment without a download
    run(page, "sentiment")
    expect(page.locator(SENTIMENT_ROWS)).to_have_count(2)
    text_row = table_rows(page, "sentiment-table")[0]
    assert text_row[:2] == ["text", "negative"], text_row


def test_models_panel(page):
    open_tab(page, "Models")
    clip = "openai/clip-vit-base-patch32"  # the zero-shot tab's default
    table, summary = page.locator("#models-table"), page.locator("#models-summary")
    expect(summary).to_contain_text("MB budget used")

    def press(button: str) -> None:
        with page.expect_response(lambda r: "/gradio_api/run/predict" in r.url, timeout=RUN_TIMEOUT_MS):
            page.locator(f"#models-{button}").click()

    choose(page, "models-task", "Zero-shot classification")
    press("preload")
    expect(table).to_contain_text(clip)
    choose(page, "models-resident", clip)
    press("unload")
    expect(table).not_to_contain_text(clip)
    expect(summary).to_contain_text(re.compile(r"evictions [1-9]"))
    press("preload")  # loads it again
    expect(table).to_contain_text(clip)
    screenshot(page, "models")


def test_phone_width(browser, app_url):
    """At 400 px the columns stack, nothing scrolls sideways, and an example still runs."""
    page = open_app(browser, app_url, PHONE)
    try:
        pick_example(page, "vqa", "What animal is this?", shows=showing_image("vqa-image", "skimage_chelsea.png"))
        run(page, "vqa")
        expect(page.locator("#vqa-provenance")).to_contain_text("ms")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
        run_box, answer_box = page.locator("#vqa-run").bounding_box(), page.locator("#vqa-answer").bounding_box()
        assert answer_box["y"] >= run_box["y"] + run_box["height"], "the answer should stack under the inputs"
        screenshot(page, "phone", full_page=True)
    finally:
        page.context.close()
