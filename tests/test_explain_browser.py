"""Explain maps and chaining as a visitor sees them, in headless Chromium (the app of tests/test_browser.py, its
helpers and fixtures): three zero-shot overlays, a caption word's map, an image carried from captioning to VQA
without a new upload, a transcript sent to sentiment. Screenshots as test_browser's (docs/screenshot-explain.png
with MMDEMO_UPDATE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import re

import pytest
import test_browser
from playwright.sync_api import Page, expect
from test_browser import WHISPER, choose, open_tab, pick_example, run, screenshot, showing_image

from mmdemo.ui.chaining import caption_nouns

pytestmark = pytest.mark.browser

# The same app, browser and page fixtures as test_browser's (module-scoped: this module gets its own app).
model_dir, app_url, browser, page, real_whisper = (test_browser.model_dir, test_browser.app_url, test_browser.browser,
                                                   test_browser.page, test_browser.real_whisper)


def _uploads(page: Page) -> list[str]:
    """Every upload request the page makes from now on (a list that grows)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if "/upload" in request.url else None)
    return seen


def test_explain_zero_shot_shows_three_overlays(page):
    open_tab(page, "Zero-shot classification")
    pick_example(page, "zero_shot", "cat, dog, rabbit, tiger",
                 shows=showing_image("zero_shot-image", "skimage_chelsea.png"))
    page.locator("#zero_shot-explain input[type=checkbox]").check()
    run(page, "zero_shot")
    maps = page.locator("#zero_shot-maps")
    expect(maps.locator(".legend-item")).to_have_count(3)
    expect(maps.locator("img.mask")).to_have_count(3)
    best = page.locator("#zero_shot-scores dt").all_inner_texts()[:3]
    assert maps.locator(".legend-item").all_inner_texts() == best  # one overlay per top label, best first
    expect(maps).to_contain_text("only the top 3 of 4 labels are explained")
    maps.locator(".legend-item").nth(1).hover()  # one label's map at a time
    screenshot(page, "explain", full_page=True)  # the labels under the map too
    page.locator("#zero_shot-explain input[type=checkbox]").uncheck()
    run(page, "zero_shot")
    expect(maps).to_be_hidden()


def test_click_a_caption_word_to_see_its_map(page):
    open_tab(page, "Image captioning")
    pick_example(page, "captioning", 0, shows=showing_image("captioning-image", "skimage_astronaut.jpg"))
    page.locator("#captioning-prefix input, #captioning-prefix textarea").first.fill("")
    choose(page, "captioning-model", "Salesforce/blip-image-captioning-base")
    page.locator("#captioning-explain input[type=checkbox]").check()
    run(page, "captioning")
    caption = page.locator("#captioning-captions textarea")
    expect(caption).not_to_have_value("")
    words = page.locator("#captioning-words label")
    expect(words).to_have_count(len(caption.input_value().split()))
    word_map = page.locator("#captioning-word-map img")
    expect(word_map).to_be_visible()
    first = word_map.get_attribute("src")
    last = caption.input_value().split()[-1]
    words.last.click()
    expect(page.locator("#captioning-word-map")).to_contain_text(f"Where the model looked for '{last}'")
    expect(word_map).not_to_have_attribute("src", first or "")
    page.locator("#captioning-explain input[type=checkbox]").uncheck()


def test_ask_about_a_captioned_image_without_a_new_upload(page):
    open_tab(page, "Image captioning")
    pick_example(page, "captioning", 2, shows=showing_image("captioning-image", "skimage_coffee.png"))
    run(page, "captioning")
    expect(page.locator("#captioning-captions textarea")).not_to_have_value("")
    uploads = _uploads(page)
    page.locator("#captioning-ask").click()
    expect(page.get_by_role("tab", name="Visual question answering")).to_have_attribute("aria-selected", "true")
    expect(page.locator(showing_image("vqa-image", "skimage_coffee.png"))).to_be_visible()
    page.locator("#vqa-question textarea").fill("What is in the cup?")
    run(page, "vqa")
    expect(page.locator("#vqa-provenance")).to_contain_text("ms")
    assert uploads == []  # the image moved in the page: nothing was sent again

    open_tab(page, "Image captioning")
    caption = page.locator("#captioning-captions textarea").input_value()
    page.locator("#captioning-suggest-labels").click()
    expect(page.get_by_role("tab", name="Zero-shot classification")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#zero_shot-labels textarea")).to_have_value(", ".join(caption_nouns(caption)))
    expect(page.locator(showing_image("zero_shot-image", "skimage_coffee.png"))).to_be_visible()


def test_send_a_transcript_to_sentiment(page, real_whisper):
    open_tab(page, "Speech to text")
    page.locator("#speech-examples").get_by_text("jfk.flac", exact=True).click()
    choose(page, "speech-model", WHISPER)
    run(page, "speech")
    transcript = page.locator("#speech-transcript textarea")
    expect(transcript).not_to_have_value("")
    said = transcript.input_value()
    page.locator("#speech-to-sentiment").click()
    expect(page.get_by_role("tab", name="Multimodal sentiment")).to_have_attribute("aria-selected", "true")
    text = page.locator("#sentiment-text textarea, #sentiment-text input").first
    expect(text).to_have_value(said)
    page.locator("#sentiment-explain input[type=checkbox]").check()
    run(page, "sentiment")
    expect(page.locator("#sentiment-fused dt")).to_have_count(3)
    words = page.locator("#sentiment-words")
    expect(words).to_be_visible()
    expect(words).to_contain_text(re.compile(re.escape(said.split()[0])))
    screenshot(page, "explain-sentiment")
