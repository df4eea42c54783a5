"""The panels in Chinese: compare mode's summary, the Models panel, the flag row, Review and Evaluate write their
texts in the visitor's language, while the API (and a page in English) keeps today's English."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.compare import agreement, result_summary
from mmdemo.errors import InputError
from mmdemo.i18n import use_locale
from mmdemo.ui import compare_panel, evaluate_tab, models_panel
from mmdemo.ui.i18n import localized

CAT = str(Path(__file__).resolve().parents[1] / "assets" / "skimage_chelsea.png")
ZH, EN = {"mmdemo-lang": "zh-CN"}, {"mmdemo-lang": "en"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


class _Request:
    """What `localized` reads of a gr.Request: the page's cookies."""

    def __init__(self, cookies: dict[str, str]) -> None:
        self.cookies = cookies


def vqa(model: str, answer: str) -> dict[str, Any]:
    return {"model": model, "ms": 1.0, "result": {"answer": answer, "answers": [{"answer": answer, "score": None}]}}


def compared(results: list[dict[str, Any]], task: str = "vqa") -> dict[str, Any]:
    """A /compare result built from scripted columns."""
    return {"task": task, "results": results, "agreement": agreement(task, results)}


CASES = {
    "all agree": [vqa("org/base", "Two cats"), vqa("org/large", "two cats."), vqa("org/vilt", "two cats")],
    "disagree": [vqa("Salesforce/blip-vqa-base", "cat"), vqa("Salesforce/blip-vqa-capfilt-large", "dog")],
    "majority and a failure": [vqa("a/one", "cat"), vqa("a/two", "cat"), vqa("a/three", "dog"),
                               {"model": "a/four", "error": "a/four is not on this machine", "ms": 0.0}],
    "three groups": [vqa("a/one", "cat"), vqa("a/two", "cat"), vqa("a/three", "dog"), vqa("a/four", "bird")],
    "one answered": [vqa("a/one", "cat"), {"model": "a/two", "error": "x", "ms": 0.0}],
    "none answered": [{"model": "a/one", "error": "x", "ms": 0.0}, {"model": "a/two", "error": "y", "ms": 0.0}],
}


@pytest.mark.parametrize("case", CASES)
def test_the_compare_summary_is_the_api_english_and_renders_in_chinese(case):
    out = compared(CASES[case])
    summary = result_summary(out)
    assert str(summary) == out["agreement"]["summary"]  # the same line as the API's, from the structured fields
    with use_locale("en"):
        assert summary.render() == out["agreement"]["summary"]
    chinese = summary.render("zh-CN")
    assert CHINESE.search(chinese) and not re.search(r"\b(agree|says|failed|answered|and)\b", chinese), chinese
    for group in out["agreement"]["groups"]:  # the models' answers and names are never translated
        if group["answer"] in str(summary):
            assert group["answer"] in chinese
    for entry in out["results"]:
        assert (entry["model"].split("/")[-1] in chinese) == (entry["model"].split("/")[-1] in str(summary))


def test_the_compare_summary_names_the_models_in_chinese():
    out = compared(CASES["majority and a failure"])
    assert result_summary(out).render("zh-CN") == "3 个模型中有 2 个一致：“cat”；three 的回答是“dog”（four 失败）"
    out = compared(CASES["disagree"])
    assert result_summary(out).render("zh-CN") == "blip-vqa-base 和 blip-vqa-capfilt-large 的回答各不相同"


def test_the_compare_panel_summary_follows_the_page_language():
    out = compared(CASES["all agree"])
    line = localized(compare_panel._summary_line)
    assert line(out, _Request(ZH)) == "✅ **3 个模型全部一致：“Two cats”**"
    assert line(out, _Request(EN)) == "✅ **3 of 3 agree: &#x27;Two cats&#x27;**"
    assert line(out, None) == line(out, _Request(EN))  # an API client: English


REPORT = {"device": "cpu", "dtype": "float32", "budget_bytes": 4 * 1024**3, "used_bytes": 612_000_000, "hits": 3,
          "misses": 2, "evictions": 1,
          "entries": [{"model": "openai/clip-vit-base-patch32", "device": "cpu", "dtype": "float32",
                       "bytes": 612_000_000, "load_seconds": 1.5, "hits": 3, "last_used": 0.0, "in_use": 0}]}


def test_the_models_panel_summary_in_chinese_and_in_english():
    summary, table, _ = models_panel.render(REPORT, _Request(ZH))
    assert summary == "**已使用 612 MB / 预算 4,295 MB**，设备 cpu（float32 运算）· 命中 3 · 未命中 2 · 淘汰 1"
    assert table["headers"][:3] == ["模型", "设备", "数据类型"]
    assert table["data"][0][0] == "openai/clip-vit-base-patch32"
    summary, table, _ = models_panel.render(REPORT)  # no request: English, as before
    assert summary == ("**612 MB of 4,295 MB budget used** on cpu (float32 arithmetic) · hits 3 · misses 2 · "
                       "evictions 1")
    assert table["headers"] == ["model", "device", "dtype", "MB", "load s", "hits", "last used", "in use"]


def test_the_models_panel_summary_with_ray_in_chinese():
    report = {**REPORT, "backend": "ray", "replicas": [{"replica": "vision#1", "models": ["a"], "max_models": 2}]}
    summary, _, _ = models_panel.render(report, _Request(ZH))
    assert summary.startswith("**1 个 Ray Serve 副本共占用 612 MB**（每个副本的模型数：vision#1 1/2）")


def test_a_panel_error_is_keyed_and_translated_while_the_api_line_stays():
    error = models_panel.admin_off()
    assert str(error) == "Model admin is off on this server: set MMDEMO_MODEL_ADMIN=1 to preload or unload models"
    assert error.render("zh-CN").startswith("此服务器已关闭模型管理")

    def refuse() -> None:
        raise InputError("error.compare.too_few", min=2, count=1)

    with pytest.raises(gr.Error) as failure:
        localized(refuse)(_Request(ZH))
    assert failure.value.message == "请至少选择 2 个模型进行对比（当前 1 个）"
    with pytest.raises(gr.Error) as failure:
        localized(refuse)(None)
    assert failure.value.message == "Pick at least 2 models to compare (got 1)"


METRICS = {"task": "zero_shot", "cancelled": True, "notes": [],
           "per_model": {"a/clip": {"top1": 0.5, "top5": 1.0, "items": 6, "errors": 0},
                         "b/siglip": {"top1": 0.25, "top5": 1.0, "items": 6, "errors": 0}},
           "comparison": {"differences": [{"model": "b/siglip", "baseline": "a/clip", "metric": "top1",
                                           "difference": -0.25, "low": -0.5, "high": 0.0, "higher_is_better": True,
                                           "items": 6}],
                          "disagreements": [1, 2], "all_wrong": [3]}}


def test_the_evaluate_summary_and_progress_in_chinese():
    summary = localized(evaluate_tab.summary_markdown)(METRICS, _Request(ZH))
    assert summary.startswith("**已取消：以下为部分结果。**")
    assert "| 模型 | Top-1 准确率 | Top-5 准确率 | 条目数 | 错误数 |" in summary
    assert ("b/siglip − a/clip，Top-1 准确率：-25.00 个百分点（95% 置信区间 -50.00 到 +0.00；越高越好），"
            "共 6 个条目") in summary
    english = localized(evaluate_tab.summary_markdown)(METRICS, None)
    assert "| model | top-1 | top-5 | items | errors |" in english
    assert "b/siglip − a/clip on top-1: -25.00 points (95 % CI -50.00 to +0.00; higher is better), 6 items" in english
    assert "Items where the models disagree: 2; every model wrong: 1" in english

    line = localized(evaluate_tab.progress_line)
    assert line(("a/clip", "b/siglip"), 7, 12, 7.0, _Request(ZH)) == "模型 2/2 b/siglip：条目 1/6，大约还需 5 秒"
    assert line(("a/clip", "b/siglip"), 6, 12, 6.0, None) == "Model 1/2 a/clip: item 6/6, about 6 s left"


def test_a_failed_column_shows_its_error_in_chinese_while_the_result_stays_english(tiny_runtime):
    runtime = tiny_runtime(allow_custom_models=True)  # a free id: not curated, not on this machine, hub offline
    with gr.Blocks():
        inputs = {"image": gr.Image(type="filepath"), "question": gr.Textbox(), "model": gr.Dropdown(["a"])}
        panel = compare_panel.build(runtime, "vqa", inputs)
    chinese = _Request(ZH)
    result, errors = panel.run(["Salesforce/blip-vqa-base", "someone/not-here-vqa"], chinese, CAT, "What is it?")
    failed = result["results"][1]
    assert "not available offline" in failed["error"]  # the API's JSON: English
    assert result["agreement"]["summary"].startswith("Only blip-vqa-base answered")
    views = panel.render(result, errors, chinese)
    assert views[0].startswith("⚠️ **只有 blip-vqa-base 给出了回答")
    column = views[1 + 5 + 1]  # the summary, the first column's five views, then the second column's header
    assert "someone/not-here-vqa" in column and CHINESE.search(column.split("⚠️")[1]), column
    assert "not available offline" in panel.render(result, errors, None)[7]  # an English page
