"""The page in Chinese and in English, in headless Chromium: the browser's language picks it, the switch reloads it in
the other and is remembered, errors and results' notes follow it, and the API stays English (set-up: test_browser.py).

The completeness check renders every tab in Chinese and lists the visible lines that still read as English words,
apart from what is never translated (model ids and their checkpoint names, example inputs, the models' outputs,
technical names): a UI string written outside the catalogue shows up there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from playwright.sync_api import Browser, Page, expect
from test_browser import (  # noqa: F401  (browser, model_dir and real_whisper are fixtures)
    ARTIFACTS,
    DOCS,
    LAPTOP,
    RUN_TIMEOUT_MS,
    UPDATE_DOCS,
    WAIT_MS,
    browser,
    model_dir,
    pick_example,
    real_whisper,
    showing_image,
)

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import i18n, registry
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.ui import STYLE, build_demo

pytestmark = pytest.mark.browser

TOAST = ".toast-body"
# Words that stay as they are in the Chinese page: names of models, formats, metrics and the app.
KEPT = {"mmdemo", "API", "JSON", "Gradio", "Whisper", "CLIP", "SigLIP", "BLIP", "ViLT", "GIT", "VADER", "RoBERTa",
        "DistilBERT", "SST", "ViT", "GPT", "base", "large", "small", "tiny", "CapFilt", "COCO", "Distil", "ZIP", "CSV",
        "JSONL", "WER", "CER", "BLEU", "CLIPScore", "F1", "VQA", "txt", "srt", "vtt", "wav", "mp3", "flac", "ms", "MB",
        "GB", "cpu", "float32", "softmax", "sigmoid", "English", "Transformer", "Ray", "Serve", "html", "csv", "jsonl",
        "zip", "ZeroGPU", "Space", "Spaces", "HTML", "URL", "id", "top", "macro", "png", "jpg", "Hz", "kHz", "MP",
        "Settings", "Runs", "Encoder", "Decoder", "encoder", "decoder", "Lexicon"}


@pytest.fixture(scope="module")
def app_url(model_dir: Path, launched) -> str:  # noqa: F811
    runtime = local_runtime(Settings(model_dir=model_dir, memory_budget=4 * 1024**3, device="cpu", model_admin="on",
                                     flagging="on"))
    return launched(build_demo(runtime), **STYLE)


def open_page(browser: Browser, url: str, locale: str) -> Page:  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    page = browser.new_context(viewport=LAPTOP, locale=locale).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    expect(page.locator("#vqa-run")).to_be_visible()
    return page


@pytest.fixture
def chinese(browser: Browser, app_url: str) -> Iterator[Page]:  # noqa: F811
    page = open_page(browser, app_url, "zh-CN")
    try:
        yield page
    finally:
        page.context.close()


def zh(key: str, **params) -> str:
    return i18n.text(key, "zh-CN", **params)


def en(key: str, **params) -> str:
    return i18n.text(key, "en", **params)


def test_a_chinese_browser_gets_the_chinese_page(chinese: Page):
    expect(chinese.locator("#vqa-tab-button")).to_have_text(zh("task.vqa.title"))
    expect(chinese.locator("#mm-header")).to_contain_text("多模态")
    expect(chinese.locator("#vqa-run")).not_to_have_text(re.compile("Answer"))
    assert chinese.evaluate("document.documentElement.lang") == "zh-CN"


def test_an_english_browser_gets_the_english_page(browser: Browser, app_url: str):  # noqa: F811
    page = open_page(browser, app_url, "en-US")
    try:
        expect(page.locator("#vqa-tab-button")).to_have_text(en("task.vqa.title"))
        expect(page.locator("#mm-header")).to_contain_text("multimodal transformers demos")
    finally:
        page.context.close()


def test_the_switch_reloads_the_page_in_that_language_and_is_remembered(chinese: Page, app_url: str):
    expect(chinese.locator("#mm-language input[value=zh-CN]")).to_be_checked()  # it shows the page's language
    chinese.locator("#mm-language").get_by_text("English").click()
    # Every tab title is English, not only the open tab's (Gradio draws them once: the page reloads).
    for name in ("vqa", "speech", "sentiment"):
        expect(chinese.locator(f"#{name}-tab-button")).to_have_text(en(f"task.{name}.title"))
    expect(chinese.locator("#mm-language input[value=en]")).to_be_checked()
    chinese.reload()
    expect(chinese.locator("#vqa-tab-button")).to_have_text(en("task.vqa.title"))  # remembered by this browser
    assert "mmdemo-lang=en" in chinese.evaluate("document.cookie")
    chinese.locator("#mm-language").get_by_text("中文").click()
    expect(chinese.locator("#captioning-tab-button")).to_have_text(zh("task.captioning.title"))


def test_a_link_with_lang_opens_that_language(browser: Browser, app_url: str):  # noqa: F811
    page = open_page(browser, app_url + "?lang=zh-CN", "en-US")
    try:
        for name in ("vqa", "zero_shot", "speech"):
            expect(page.locator(f"#{name}-tab-button")).to_have_text(zh(f"task.{name}.title"))
    finally:
        page.context.close()


def test_an_error_shows_in_the_page_language_and_the_api_gets_english(chinese: Page, app_url: str):
    chinese.locator("#vqa-question").locator("textarea").fill("这是什么？")
    chinese.locator("#vqa-run").click()
    toast = chinese.locator(TOAST).last
    expect(toast).to_contain_text(zh("error.image.missing"), timeout=RUN_TIMEOUT_MS)
    # The same request from an API client: the same error, in English, as before the page had languages.
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match=re.escape(en("error.image.missing"))):
        client.predict(None, "What is this?", "Salesforce/blip-vqa-base", False, api_name="/vqa")


def test_a_result_note_follows_the_page_language(chinese: Page):
    pick_example(chinese, "vqa", "What animal is this?", shows=showing_image("vqa-image", "skimage_chelsea.png"))
    chinese.locator("#vqa-run").click()
    provenance = chinese.locator("#vqa-provenance")
    expect(provenance).to_contain_text(" ms", timeout=RUN_TIMEOUT_MS)
    expect(chinese.locator("#vqa-answer")).to_be_visible()


def _english_lines(page: Page, examples: set[str]) -> list[str]:
    """Visible lines that read as English words, less what stays untranslated (see KEPT) and the examples."""
    found = []
    for line in page.locator("body").inner_text().splitlines():
        line = line.strip()
        if not line or line in examples or "/" in line or " " not in line:  # one token: a name, a format
            continue
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]+", line) if w not in KEPT]
        if len(words) >= 2 and not re.search(r"[\u4e00-\u9fff]", line):
            found.append(line)
    return found


def test_every_tab_is_chinese(chinese: Page):
    """Each tab, as first shown in Chinese: no line of English words apart from examples and names."""
    examples = {text.strip() for text in chinese.locator("[id$='-examples'] td").all_inner_texts()}
    leftovers = {}
    tabs = [name for name in registry.names() if registry.get(name).has_tab] + ["evaluate", "review", "models"]
    for name in tabs:
        button = chinese.locator(f"#{name}-tab-button")
        if not button.count():
            continue
        button.click()
        chinese.wait_for_timeout(300)
        examples |= {text.strip() for text in chinese.locator("[id$='-examples'] td").all_inner_texts()}
        if lines := _english_lines(chinese, examples):
            leftovers[name] = lines
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert leftovers == {}


def test_chinese_screenshot(chinese: Page):
    """The Chinese page after a run, for the README (MMDEMO_UPDATE_DOCS_SCREENSHOTS=1 refreshes docs/)."""
    pick_example(chinese, "vqa", "What animal is this?", shows=showing_image("vqa-image", "skimage_chelsea.png"))
    chinese.locator("#vqa-run").click()
    expect(chinese.locator("#vqa-provenance")).to_contain_text(" ms", timeout=RUN_TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chinese.screenshot(path=str(ARTIFACTS / "zh-CN.png"))
    if UPDATE_DOCS:
        chinese.screenshot(path=str(DOCS / "screenshot-zh-CN.png"))
    assert (ARTIFACTS / "zh-CN.png").stat().st_size > 10_000

