"""Compare mode, flags and the Review tab as a tester uses them, in headless Chromium (see test_browser.py for the
set-up: tiny checkpoints, with the offline pack's real Whisper tiny.en and base where installed)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from test_browser import (  # noqa: F401  (browser, model_dir and real_whisper are fixtures)
    ASSETS,
    LAPTOP,
    RUN_TIMEOUT_MS,
    browser,
    choose,
    model_dir,
    open_app,
    open_tab,
    pick_example,
    real_whisper,
    run,
    screenshot,
    shared_media,
    showing_image,
    table_rows,
)

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.flags import FlagStore
from mmdemo.ui import STYLE, build_demo

pytestmark = pytest.mark.browser
MARKED = "[data-testid=highlighted-text] .token.highlighted"  # a word or answer compare mode marked


@pytest.fixture(scope="module")
def flag_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def app_url(model_dir: Path, flag_dir: Path, launched) -> str:  # noqa: F811
    settings = Settings(model_dir=model_dir, memory_budget=4 * 1024**3, device="cpu", model_admin="on",
                        flagging="on", flag_dir=flag_dir)
    return launched(build_demo(local_runtime(settings)), **STYLE)


@pytest.fixture(scope="module")
def page(browser, app_url: str) -> Iterator[Page]:  # noqa: F811
    page = open_app(browser, app_url, LAPTOP)
    try:
        yield page
    finally:
        page.context.close()


def open_compare(page: Page, task: str) -> None:
    if not page.locator(f"#{task}-compare-run").is_visible():
        page.locator(f"#{task}-compare").get_by_text("Compare models side by side").click()
    expect(page.locator(f"#{task}-compare-run")).to_be_visible()


def pick_models(page: Page, task: str, *models: str) -> None:
    """Empty the compare picker (its Clear button), then choose `models` from its list."""
    picker = f"{task}-compare-models"
    page.locator(f"#{picker} .remove-all").click()
    expect(page.locator(f"#{picker} .token")).to_have_count(0)
    for model in models:
        choose_many(page, picker, model)


def choose_many(page: Page, elem_id: str, option: str) -> None:
    """Add `option` to a multiselect dropdown: type it (the list narrows to it) and press Enter."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    box.press_sequentially(option)
    expect(page.locator(f"#{box.get_attribute('aria-controls')}").get_by_role("option")).to_have_count(1)
    box.press("Enter")
    expect(page.locator(f"#{elem_id} .token", has_text=option)).to_be_visible()
    box.press("Escape")


def compare(page: Page, task: str) -> None:
    with page.expect_response(lambda r: "/gradio_api/run/predict" in r.url, timeout=RUN_TIMEOUT_MS):
        page.locator(f"#{task}-compare-run").click()
    expect(page.locator(f"#{task}-compare-summary")).to_contain_text("agree", timeout=RUN_TIMEOUT_MS)


def column_text(page: Page, task: str, number: int) -> str:
    return page.locator(f"#{task}-compare-col{number}").inner_text()


def test_compare_blip_and_vilt_marks_the_disagreement(page):
    open_tab(page, "Visual question answering")
    pick_example(page, "vqa", "What animal is this?", shows=showing_image("vqa-image", "skimage_chelsea.png"))
    open_compare(page, "vqa")
    pick_models(page, "vqa", "Salesforce/blip-vqa-base", "dandelin/vilt-b32-finetuned-vqa")
    compare(page, "vqa")
    summary = page.locator("#vqa-compare-summary").inner_text()
    first, second = column_text(page, "vqa", 0), column_text(page, "vqa", 1)
    assert "blip-vqa-base" in first and "vilt-b32-finetuned-vqa" in second
    expect(page.locator("#vqa-compare-col2")).to_be_hidden()
    # The tiny random checkpoints answer differently: the summary says so and the second answer is marked.
    assert "disagree" in summary, summary
    expect(page.locator(f"#vqa-compare-col1 {MARKED}")).to_have_count(1)  # ViLT's answer, marked as differing
    expect(page.locator(f"#vqa-compare-col0 {MARKED}")).to_have_count(0)  # the first column is the reference
    screenshot(page, "compare", full_page=True)


def test_speech_compare_shows_the_word_diff(page, real_whisper):  # noqa: F811
    if {"openai/whisper-tiny.en", "openai/whisper-base"} - set(real_whisper):
        pytest.skip("the offline Whisper pack (tiny.en and base) is not installed")
    open_tab(page, "Speech to text")
    clip = shared_media("audio/LJ050-0131.wav", "LJ050-0131.wav")
    page.locator("#speech-audio input[type=file]").set_input_files(clip)
    open_compare(page, "speech")
    pick_models(page, "speech", "openai/whisper-tiny.en", "openai/whisper-base")
    compare(page, "speech")
    assert "whisper-tiny.en" in column_text(page, "speech", 0) and "whisper-base" in column_text(page, "speech", 1)
    # The real models hear the same sentence: most words shared, each column's text a real transcript.
    assert "review" in column_text(page, "speech", 0).lower() and "review" in column_text(page, "speech", 1).lower()
    summary = page.locator("#speech-compare-summary").inner_text()
    if "disagree" in summary:  # where they differ, the differing words are marked in the second column
        expect(page.locator(f"#speech-compare-col1 {MARKED}").first).to_be_visible()
    screenshot(page, "compare-speech", full_page=True)


def test_flag_review_export_and_rerun(page, flag_dir, tmp_path):
    open_tab(page, "Visual question answering")
    pick_example(page, "vqa", "What is in the cup?", shows=showing_image("vqa-image", "skimage_coffee.png"))
    choose(page, "vqa-model", "dandelin/vilt-b32-finetuned-vqa")
    run(page, "vqa")
    expect(page.locator("#vqa-answer")).not_to_be_empty()
    page.locator("#vqa-single-flag-note textarea").fill("<b>not</b> coffee? check this one")
    page.locator("#vqa-single-flag-correction textarea, #vqa-single-flag-correction input").first.fill("coffee")
    page.locator("#vqa-single-flag-down").click()
    expect(page.locator("#vqa-single-flag-status")).to_contain_text("Flagged 👎")
    stored = FlagStore(flag_dir, 10**9).find(task="vqa")
    assert stored and stored[0]["note"] == "<b>not</b> coffee? check this one" and stored[0]["correction"] == "coffee"

    open_tab(page, "Review")
    page.locator("#review-show").click()
    expect(page.locator("#review-table")).to_contain_text("check this one")
    row = next(r for r in table_rows(page, "review-table") if "check this one" in " ".join(r))
    assert row[2] == "vqa" and row[3] == "👎" and "vilt-b32-finetuned-vqa" in row[4]
    assert row[6] == "<b>not</b> coffee? check this one"  # the note as typed: text, not HTML
    expect(page.locator("#review-table img[src^='data:image/jpeg']").first).to_be_attached()  # its thumbnail
    page.locator("#review-table [role=gridcell]", has_text="check this one").first.click()
    expect(page.locator("#review-note textarea")).to_have_value("<b>not</b> coffee? check this one")  # as text
    screenshot(page, "review", full_page=True)

    page.locator("#review-export").click()
    link = page.locator("#review-file a[href*='.zip']").first
    expect(link).to_be_attached()
    data = page.request.get(link.get_attribute("href")).body()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        mine = next(r for r in rows if r["question"] == "What is in the cup?")
        assert mine["answers"] == "coffee"
        assert archive.read(mine["file"]) == (ASSETS / "skimage_coffee.png").read_bytes()

    # Re-run on two models: the VQA tab opens in compare mode with the flag's image and question.
    choose_many(page, "review-rerun-models", "Salesforce/blip-vqa-base")
    page.locator("#review-rerun").click()
    expect(page.locator("#vqa-compare-summary")).to_contain_text("agree", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#vqa-question textarea, #vqa-question input").first).to_have_value("What is in the cup?")
    columns = column_text(page, "vqa", 0) + column_text(page, "vqa", 1)
    assert "vilt-b32-finetuned-vqa" in columns and "blip-vqa-base" in columns


def test_an_evaluation_row_opens_in_compare_mode(page):
    open_tab(page, "Evaluate")
    page.locator("#evaluate-examples").get_by_text("zero_shot", exact=True).click()
    choose_many(page, "evaluate-models", "google/siglip-base-patch16-224")
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-summary")).to_contain_text("siglip", timeout=RUN_TIMEOUT_MS)
    page.locator("#evaluate-results [role=gridcell]").nth(2).click()  # a row's file cell
    expect(page.locator("#evaluate-compare")).to_be_visible()
    page.locator("#evaluate-compare").click()
    # The zero-shot tab opens with the item's labels and both of the run's models compared.
    expect(page.locator("#zero_shot-compare-summary")).to_contain_text("agree", timeout=RUN_TIMEOUT_MS)
    columns = column_text(page, "zero_shot", 0) + column_text(page, "zero_shot", 1)
    assert "clip-vit-base-patch32" in columns and "siglip-base-patch16-224" in columns
    expect(page.locator("#zero_shot-labels textarea, #zero_shot-labels input").first).not_to_have_value("")
