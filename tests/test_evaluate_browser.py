"""The Evaluate tab as a tester uses it, in headless Chromium: upload a ZIP, watch the progress, cancel that run,
finish another (a ready-made set), sort the results, download report.html and open it offline with no network
request. Tiny random-weight checkpoints: the answers are nonsense, the mechanics are real.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from test_browser import LAPTOP, RUN_TIMEOUT_MS, browser, open_app, open_tab, table_rows  # noqa: F401  (fixture)

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.evaluate import engine
from mmdemo.ui import STYLE, build_demo

pytestmark = pytest.mark.browser

ITEMS = 40
ROW_SECONDS = 0.5  # each row made slower, so that the run is still going when Cancel is pressed


@pytest.fixture(scope="module")
def app_url(tiny_model_dir: Path, launched) -> str:
    runtime = local_runtime(Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu",
                                     quantize="none"))
    return launched(build_demo(runtime), **STYLE)


@pytest.fixture
def slow_rows(monkeypatch) -> None:
    row = engine._row

    def slow(*args, **kwargs):
        time.sleep(ROW_SECONDS)
        return row(*args, **kwargs)

    monkeypatch.setattr(engine, "_row", slow)


def photo_set(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        rows = ["file,label,labels"]
        for i in range(ITEMS):
            buffer = io.BytesIO()
            pixels = np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, "PNG")
            zf.writestr(f"photos/p{i}.png", buffer.getvalue())
            rows.append(f"p{i}.png,{['cat', 'dog'][i % 2]},cat|dog|bird")
        zf.writestr("photos/manifest.csv", "\n".join(rows) + "\n")
    return path


def eventually(read, want, seconds: float = 10.0):
    """Whether `read()` equals `want` within `seconds` (the table re-renders after a sort); the last value else."""
    deadline = time.monotonic() + seconds
    while True:
        got = read()
        if got == want:
            return True
        if time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def header_index(page: Page, title: str) -> int:
    header = page.locator("#evaluate-results [role=row][aria-rowindex='1'] [role=columnheader]").all_inner_texts()
    names = [text.replace("⋮", "").strip().split("\n")[0].strip() for text in header]  # no menu, no sort rank
    assert title in names, (names, header)
    return names.index(title)


def sort_by(page: Page, title: str, direction: str) -> None:
    """Sort the results table by a column from its header's menu ("ascending" or "descending")."""
    header = page.locator("#evaluate-results [role=row][aria-rowindex='1'] [role=columnheader]").nth(
        header_index(page, title))
    header.hover()
    header.locator("button[aria-label='Open cell menu']").click()
    page.get_by_text(re.compile(direction, re.IGNORECASE)).first.click()


def column(page: Page, title: str) -> list[str]:
    index = header_index(page, title)
    return [row[index] for row in table_rows(page, "evaluate-results")]


def test_evaluate_tab_cancel_finish_sort_and_report_offline(browser, app_url, slow_rows, tmp_path):  # noqa: F811
    page = open_app(browser, app_url, LAPTOP)
    open_tab(page, "Evaluate")
    summary = page.locator("#evaluate-summary")

    # A ZIP of 40 photos: progress per item with the time left, then Cancel keeps what is done.
    page.locator("#evaluate-archive input[type=file]").set_input_files(photo_set(tmp_path / "photos.zip"))
    expect(page.locator("#evaluate-archive")).to_contain_text("photos")
    page.locator("#evaluate-run").click()
    expect(summary).to_contain_text(re.compile(rf"item \d+/{ITEMS}, about \d+ s left"), timeout=RUN_TIMEOUT_MS)
    page.locator("#evaluate-cancel").click()
    expect(summary).to_contain_text("Cancelled: partial results", timeout=RUN_TIMEOUT_MS)
    rows = table_rows(page, "evaluate-results")
    assert 0 < len(rows) < ITEMS, len(rows)
    expect(page.locator("#evaluate-downloads")).to_contain_text("report.html")

    # Another run, to the end: the ready-made zero-shot set (it takes precedence over the uploaded ZIP).
    page.locator("#evaluate-examples").get_by_text("zero_shot", exact=True).click()
    expect(page.locator("#evaluate-preset input")).to_have_value(re.compile("^zero_shot"))
    page.locator("#evaluate-run").click()
    expect(summary).to_contain_text("top-1", timeout=RUN_TIMEOUT_MS)
    expect(summary).not_to_contain_text("Cancelled")
    expect(page.locator("#evaluate-results [role=row]:not([aria-rowindex='1'])")).to_have_count(6)
    files = column(page, "file")
    assert sorted(files) == sorted(["skimage_chelsea.png", "skimage_coffee.png", "skimage_rocket.jpg",
                                    "skimage_astronaut.jpg", "skimage_camera.png", "skimage_horse.png"])
    top1 = [float(value) for value in column(page, "top-1")]
    assert top1 == sorted(top1)  # worst first

    # Sort by top-1 from its header's menu: the best first, then the worst first again.
    sort_by(page, "top-1", "descending")
    assert eventually(lambda: [float(v) for v in column(page, "top-1")], sorted(top1, reverse=True))
    sort_by(page, "top-1", "ascending")
    assert eventually(lambda: [float(v) for v in column(page, "top-1")], sorted(top1))

    # Download report.html and open it with the network off: it shows everything and asks for nothing.
    with page.expect_download() as download:
        page.locator("#evaluate-downloads a[download='report.html']").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    page.context.close()
    offline = browser.new_context(offline=True)
    try:
        viewer = offline.new_page()
        requests: list[str] = []
        viewer.on("request", lambda request: requests.append(request.url))
        viewer.goto(report.as_uri())
        expect(viewer.locator("h1")).to_contain_text("Evaluation: zero_shot, 6 items × 1 model(s)")
        thumbnails = viewer.locator("img.thumb")
        expect(thumbnails).to_have_count(6)
        assert all(width > 0 for width in thumbnails.evaluate_all("images => images.map(i => i.naturalWidth)"))
        expect(viewer.locator("svg")).to_have_count(1)  # the confusion matrix
        viewer.locator("table.sortable th").filter(has_text="file").click()  # its own inline sorting works
        names = viewer.locator("table.sortable tbody tr td:nth-child(3)").all_inner_texts()
        assert names == sorted(names)
        assert requests == [report.as_uri()], requests
    finally:
        offline.close()
