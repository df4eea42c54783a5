"""Compare mode: the agreement rules on scripted results, and /compare on the tiny checkpoints: parity with the
single endpoints, a failing column, and a budget that holds one of the two models at a time."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_bad_inputs import assert_same_result, one_torch_thread, without_timing  # noqa: F401  (autouse)

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.compare import agreement, compare, word_diff
from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.ui import build_demo

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = str(ASSETS / "skimage_chelsea.png")
JFK = str(ASSETS / "jfk.flac")
BLIP, VILT = "Salesforce/blip-vqa-base", "dandelin/vilt-b32-finetuned-vqa"
CAPTIONERS = ("Salesforce/blip-image-captioning-base", "Salesforce/blip-image-captioning-large")


# ---------------------------------------------------------------- the rules, on scripted results


def vqa(model: str, answer: str, score: float | None = None) -> dict[str, Any]:
    return {"model": model, "ms": 1.0, "result": {"answer": answer, "answers": [{"answer": answer, "score": score}]}}


def labels(model: str, *ranked: str) -> dict[str, Any]:
    scores = [0.5, 0.3, 0.15, 0.05]
    return {"model": model, "ms": 1.0,
            "result": {"labels": [{"label": label, "score": s} for label, s in zip(ranked, scores, strict=False)]}}


def test_word_diff_marks_insertions_and_deletions_in_place():
    assert word_diff("a cat sitting on a couch", "A cat lying on the couch.") == [
        ["A", None], ["cat", None], ["sitting", "-"], ["lying", "+"], ["on", None], ["a", "-"], ["the", "+"],
        ["couch.", None]]
    assert word_diff("two cats", "two cats") == [["two", None], ["cats", None]]
    assert word_diff("", "new words") == [["new", "+"], ["words", "+"]]


def test_all_agree_case_and_punctuation_blind():
    out = agreement("vqa", [vqa("org/base", "Two cats"), vqa("org/large", "two cats."), vqa("org/vilt", "two cats")])
    assert out["agree"] is True and out["summary"] == "3 of 3 agree: 'Two cats'"
    assert out["groups"] == [{"answer": "Two cats", "models": ["org/base", "org/large", "org/vilt"]}]


def test_two_models_disagree():
    out = agreement("vqa", [vqa("Salesforce/blip-vqa-base", "cat"), vqa("Salesforce/blip-vqa-capfilt-large", "dog")])
    assert out["agree"] is False
    assert out["summary"] == "blip-vqa-base and blip-vqa-capfilt-large disagree"


def test_majority_names_the_odd_one_out_and_the_failed():
    results = [vqa("a/one", "cat"), vqa("a/two", "cat"), vqa("a/three", "dog"),
               {"model": "a/four", "error": "a/four is not on this machine", "ms": 0.0}]
    out = agreement("vqa", results)
    assert out["summary"] == "2 of 3 agree: 'cat'; three says 'dog' (four failed)"


def test_same_top_label_with_a_different_top3_is_called_out():
    out = agreement("zero_shot", [labels("x/a", "cat", "dog", "bird"), labels("x/b", "cat", "bird", "dog")])
    assert out["agree"] is True and out["top3_same"] is False
    assert out["summary"] == "2 of 2 agree: 'cat', but their top 3 differ"


def test_free_text_gets_a_word_diff_against_the_first_column():
    results = [{"model": m, "ms": 1.0, "result": {"caption": c, "captions": [c]}}
               for m, c in (("s/base", "a cat on a bed"), ("s/large", "a cat on a sofa"))]
    out = agreement("captioning", results)
    assert out["diff"]["s/base"] == [[w, None] for w in "a cat on a bed".split()]
    assert out["diff"]["s/large"][-2:] == [["bed", "-"], ["sofa", "+"]]


@pytest.mark.parametrize(("models", "message"), [
    (["Salesforce/blip-vqa-base"], "Pick at least 2 models to compare (got 1)"),
    ([BLIP, VILT, BLIP, VILT, "Salesforce/blip-vqa-capfilt-large"], "Pick at most 4 models to compare (got 5)"),
    ([BLIP, BLIP], "Salesforce/blip-vqa-base is picked twice"),
    ([BLIP, "someone/unknown-vqa"], "Unknown model 'someone/unknown-vqa' for Visual question answering"),
    ("", "Pick at least 2 models"),
    (42, "Models must be a list"),
])
def test_bad_model_lists_are_refused_before_anything_runs(tiny_runtime, models, message):
    runtime = tiny_runtime()
    with pytest.raises(InputError, match=re.escape(message)):
        compare(runtime, "vqa", {"image": CAT, "question": "What is it?"}, models)
    assert runtime.cache_report()["entries"] == []  # nothing loaded


# ---------------------------------------------------------------- through the app


@pytest.fixture(scope="module")
def app(tiny_runtime, launched) -> tuple[Client, Any]:
    runtime = tiny_runtime()
    return Client(launched(build_demo(runtime)), verbose=False), runtime


def test_vqa_columns_equal_the_single_endpoint(app):
    client, _ = app
    out = client.predict("vqa", [BLIP, VILT], {"question": "What animal is this?"}, handle_file(CAT), None,
                         api_name="/compare")
    assert out["task"] == "vqa" and [r["model"] for r in out["results"]] == [BLIP, VILT]
    for entry in out["results"]:
        single = client.predict(handle_file(CAT), "What animal is this?", entry["model"], api_name="/vqa")
        assert_same_result(without_timing(entry["result"]), without_timing(single))
        assert entry["ms"] > 0
    answers = [r["result"]["answer"] for r in out["results"]]
    assert out["agreement"]["agree"] is (answers[0].lower() == answers[1].lower())
    assert {m for g in out["agreement"]["groups"] for m in g["models"]} == {BLIP, VILT}


def test_speech_compare_diffs_the_transcripts(app):
    client, _ = app
    out = client.predict("speech", ["openai/whisper-tiny", "openai/whisper-base"], {"language": "auto"}, None,
                         handle_file(JFK), api_name="/compare")
    texts = [r["result"]["text"] for r in out["results"]]
    diff = out["agreement"]["diff"]
    assert [w for w, op in diff["openai/whisper-tiny"]] == texts[0].split()  # the first column is the reference
    assert [w for w, op in diff["openai/whisper-base"] if op != "-"] == texts[1].split()
    assert [w for w, op in diff["openai/whisper-base"] if op != "+"] == texts[0].split()


def test_sentiment_compares_text_models_vader_included(app):
    client, _ = app
    out = client.predict("sentiment", ["vader", "cardiffnlp/twitter-roberta-base-sentiment-latest"],
                         {"text": "What a wonderful, happy day"}, None, None, api_name="/compare")
    vader = out["results"][0]["result"]
    assert vader["text_backend"] == "vader" and vader["label"] == "positive"
    assert out["results"][1]["result"]["text_backend"] == "cardiffnlp/twitter-roberta-base-sentiment-latest"


def test_a_missing_model_fails_its_column_only(tiny_runtime):
    runtime = tiny_runtime(allow_custom_models=True)  # a free id: not curated, not on this machine, hub offline
    out = compare(runtime, "vqa", {"image": CAT, "question": "What is it?"}, [BLIP, "someone/not-here-vqa"])
    ok, failed = out["results"]
    assert ok["result"]["answer"] == runtime.run("vqa", {"image": CAT, "question": "What is it?",
                                                          "model": BLIP})["answer"]
    assert "result" not in failed and "someone/not-here-vqa" in failed["error"] and "\n" not in failed["error"]
    assert out["agreement"]["summary"] == f"Only blip-vqa-base answered: '{ok['result']['answer']}' " \
                                          "(not-here-vqa failed)"


def test_a_bad_input_fails_the_whole_compare_in_one_line(app, tmp_path):
    client, _ = app
    with pytest.raises(AppError, match=r"^Question is empty: type one$"):
        client.predict("vqa", [BLIP, VILT], {"question": "  "}, handle_file(CAT), None, api_name="/compare")
    with pytest.raises(AppError, match=r"^Unknown option 'speed' for vqa: use question, model, explain$"):
        client.predict("vqa", [BLIP, VILT], {"speed": 3}, handle_file(CAT), None, api_name="/compare")
    with pytest.raises(AppError, match=r"^Unknown task 'ocr': choose one of vqa, captioning"):
        client.predict("ocr", [BLIP, VILT], {}, handle_file(CAT), None, api_name="/compare")


def test_a_budget_for_one_model_runs_both_one_after_the_other(tiny_model_dir):
    sizes = {}
    probe = local_runtime(Settings(model_dir=tiny_model_dir, device="cpu", quantize="none", memory_budget=4 << 30))
    for model in CAPTIONERS:
        probe.preload("captioning", model)
    sizes = {e["model"]: e["bytes"] for e in probe.cache_report()["entries"]}
    budget = max(sizes.values()) + min(sizes.values()) // 2  # either fits, both do not
    runtime = local_runtime(Settings(model_dir=tiny_model_dir, device="cpu", quantize="none", memory_budget=budget))
    samples: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            samples.append(runtime.cache_report()["used_bytes"])
            stop.wait(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    messages: list[str] = []
    try:
        out = compare(runtime, "captioning", {"image": CAT, "num_beams": 2, "max_new_tokens": 8}, list(CAPTIONERS),
                      messages.append)
    finally:
        stop.set()
        watcher.join()
    assert all("result" in entry for entry in out["results"]), out["results"]
    assert samples and max(samples) <= budget
    assert runtime.cache_report()["evictions"] >= 1
    assert "Loading blip-image-captioning-large (2 of 2)…" in messages
    # ...and each column is what that model alone gives.
    for entry in out["results"]:
        alone = runtime.run("captioning", {"image": CAT, "num_beams": 2, "max_new_tokens": 8,
                                           "model": entry["model"]})
        assert alone["captions"] == entry["result"]["captions"]
