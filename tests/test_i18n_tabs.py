"""The tabs in the visitor's language: the hint that CLIP and SigLIP read English best, results' notes rebuilt in
Chinese from the result's fields (English where the fields do not say everything the note says), and the handlers'
texts and errors in the request's language. English stays what the page showed before it spoke Chinese."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from mmdemo import i18n
from mmdemo.config import Settings
from mmdemo.tasks.sentiment.task import VADER_MAPPING_NOTE
from mmdemo.tasks.speech.task import whisper_languages
from mmdemo.ui import chaining
from mmdemo.ui import i18n as ui_i18n
from mmdemo.ui.language_hints import has_cjk, localized_table, translated_note
from mmdemo.ui.tabs import captioning, sentiment, speech, speech_live, zero_shot

ZH = {"mmdemo-lang": "zh-CN"}
PROVENANCE = {"models": {"model": "openai/whisper-tiny"}, "device": "cpu", "dtype": "float32", "ms": 12.0}
RELEVANCE = "Relevance (Chefer et al. 2021) of each image patch to the label's logit"  # the API's English note


class _Request:
    """What `localized` reads of a gr.Request: the page's cookies."""

    def __init__(self, cookies: dict[str, str]) -> None:
        self.cookies = cookies


@pytest.fixture
def chinese():
    """Inside: a handler's language, as `localized` sets it for a Chinese page."""
    token = ui_i18n._active.set(True)
    try:
        with i18n.use_locale("zh-CN"):
            yield
    finally:
        ui_i18n._active.reset(token)


# ---------------------------------------------------------------- the English hint


@pytest.mark.parametrize("text", ["猫, 狗", "a photo of a 猫", "ねこ", "고양이", "一隻貓", "𠀋"])
def test_cjk_letters_are_found(text):
    assert has_cjk(text)


@pytest.mark.parametrize("text", ["cat, dog", "a photo of a {}.", "café, naïve, Straße", "cat，dog。", "", None])
def test_latin_text_and_full_width_punctuation_alone_are_not_cjk(text):
    assert not has_cjk(text)


def test_any_of_several_texts_counts():
    assert has_cjk("cat, dog", "一张{}的照片")
    assert not has_cjk("cat, dog", None, "a photo of a {}.")


# ---------------------------------------------------------------- notes and tables


def test_a_note_is_translated_only_when_its_english_is_rebuilt_exactly():
    with i18n.use_locale("zh-CN"):
        assert translated_note(RELEVANCE, "zero_shot.explain.relevance") == (
            "每个图像块对该标签 logit 的相关性（Chefer 等，2021）")
        said_more = RELEVANCE + "; something the result does not record"
        assert translated_note(said_more, "zero_shot.explain.relevance") == said_more
    assert translated_note(RELEVANCE, "zero_shot.explain.relevance") == RELEVANCE


def test_table_headers_follow_the_language():
    rows = [[0.0, 1.5, "hello"]]
    assert list(localized_table(rows, speech.SEGMENT_HEADERS).columns) == ["start (s)", "end (s)", "text"]
    with i18n.use_locale("zh-CN"):
        table = localized_table(rows, speech.SEGMENT_HEADERS)
    assert list(table.columns) == ["开始（秒）", "结束（秒）", "文本"] and table.values.tolist() == rows


# ---------------------------------------------------------------- the tabs' render functions


def speech_result(text: str = "") -> dict:
    segment = {"start": 0.0, "end": 2.0, "text": text}
    return {"text": text, "segments": [segment] if text else [], "duration": 2.04, "provenance": PROVENANCE,
            "downloads": {"txt": text, "srt": "", "vtt": "WEBVTT\n"}, "words": [], "confidence": 0.5}


def test_speech_render_writes_its_notes_in_chinese(monkeypatch, tmp_path):
    monkeypatch.setattr(speech, "DOWNLOAD_ROOT", tmp_path)
    render = ui_i18n.localized(speech.render)
    transcript, table, _, note, _, _ = render(speech_result(), _Request(ZH))
    assert transcript == "（未识别到语音）"
    assert "音频时长 2.0 秒" in note
    assert list(table.columns) == ["开始（秒）", "结束（秒）", "文本"]
    transcript, table, _, note, _, _ = render(speech_result(), _Request({}))  # no cookie: the API's English
    assert transcript == "(no speech recognised)" and "2.0 s of audio" in note
    assert list(table.columns) == ["start (s)", "end (s)", "text"]


def test_speech_render_keeps_the_transcript_as_whisper_wrote_it(monkeypatch, tmp_path, chinese):
    monkeypatch.setattr(speech, "DOWNLOAD_ROOT", tmp_path)
    transcript, table, *_ = speech.render(speech_result("Ask not what your country can do for you"))
    assert transcript == "Ask not what your country can do for you"
    assert table.values.tolist() == [[0.0, 2.0, "Ask not what your country can do for you"]]


def test_the_words_legend_speaks_the_request_language(chinese):
    html = speech_live.words_html([{"text": "ask", "probability": 0.3}], [], 0.5)
    assert "橙色" in html and "0.50" in html and "ask" in html


def zero_shot_result(labels: list[str], explained: int) -> dict:
    scores = [{"label": label, "score": 1 / len(labels)} for label in labels]
    note = RELEVANCE + (f"; only the top {explained} of {len(labels)} labels are explained"
                        if explained < len(labels) else "")
    maps = [{"label": label, "score": 0.2, "grid": [[0.0]]} for label in labels[:explained]]
    return {"labels": scores, "scoring": "sigmoid", "provenance": PROVENANCE,
            "explanation": {"method": "chefer-relevance", "note": note, "maps": maps}}


def test_zero_shot_render_and_explanation_in_chinese(chinese):
    result = zero_shot_result(["cat", "dog", "bird", "fish", "horse"], explained=3)
    scores, note = zero_shot.render(result)
    assert scores == {"cat": 0.2, "dog": 0.2, "bird": 0.2, "fish": 0.2, "horse": 0.2}  # the visitor's own labels
    assert "SigLIP 对每个标签独立打分" in note
    assert zero_shot.explanation_note(result).endswith("5 个标签中只解释了得分最高的 3 个")


def test_zero_shot_explanation_in_english_is_the_api_note():
    for explained in (3, 2):
        result = zero_shot_result(["cat", "dog", "bird"], explained=explained)
        assert zero_shot.explanation_note(result) == result["explanation"]["note"]


def sentiment_result(explanation: dict | None = None) -> dict:
    probabilities = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    row = {"modality": "text", "label": "positive", "probabilities": probabilities, "weight": 1.0,
           "certainty": 0.6}
    return {"label": "positive", "probabilities": probabilities, "method": "weighted_average", "modalities": [row],
            "contributions": {"text": probabilities}, "ablation": [{"without": "text", "label": None,
                                                                  "probabilities": None}],
            "transcript": None, "text_backend": "vader", "notes": [VADER_MAPPING_NOTE], "provenance": PROVENANCE,
            **({"explanation": explanation} if explanation else {})}


def test_sentiment_render_in_chinese(chinese):
    fused, summary, rows, plot, _, _ = sentiment.render(sentiment_result())
    assert fused == {"负面": 0.1, "中性": 0.2, "正面": 0.7}
    assert summary.startswith("**正面**，依据文本 · 加权平均")
    assert "去掉文本：无法确定" in summary
    assert "VADER 综合分" in summary and "softmax(4·(−c, 0.05, c))" in summary
    assert rows[0][:2] == ["文本", "正面"]
    assert plot.y_title == "占融合概率的份额" and plot.x_title == "类别"
    table = sentiment.render_views(sentiment_result())[2]
    assert list(table.columns)[:3] == ["模态", "判断", "负面"]


def test_sentiment_render_in_english_is_unchanged():
    _, summary, rows, _, _, _ = sentiment.render(sentiment_result())
    assert summary.startswith("**Positive** from text · Weighted average: p = Σ w·p_m / Σ w, with your weights.")
    assert f"<small>{VADER_MAPPING_NOTE}</small>" in summary
    assert rows[0][:2] == ["text", "positive"]


def test_sentiment_word_notes_translate_unless_the_text_was_cut(chinese):
    note = "Occlusion: how much the verdict's probability drops when the word is left out"
    whole = {"method": "occlusion", "note": f"{note} (the verdict: negative)", "label": "negative", "words": []}
    assert sentiment.explanation_note(whole) == "遮挡：去掉该词后判断结果的概率下降多少（判断：负面）"
    cut = dict(whole, note=f"{note}; only the first 64 of 80 words are scored (the verdict: negative)")
    assert sentiment.explanation_note(cut) == cut["note"]  # the result does not record the cut: English


def test_a_captioner_without_maps_keeps_its_english_note(chinese):
    note = "Maps are not available for VisionEncoderDecoderModel: its attention weights cannot be read here"
    assert captioning._note({"method": None, "note": note, "maps": []}) == note


# ---------------------------------------------------------------- handlers and their errors


def test_suggest_labels_errs_and_informs_in_the_request_language():
    with pytest.raises(gr.Error) as failure:
        chaining.suggest_labels(None, _Request(ZH))
    assert failure.value.message == "请先为图片生成描述：标签取自描述中的名词"
    assert chaining.suggest_labels({"caption": "a dog on a beach"}, _Request(ZH)) == "dog, beach"


def test_a_full_live_transcription_is_refused_in_chinese(tmp_path):
    streams = speech_live.LiveStreams(SimpleNamespace(settings=Settings(max_live_streams=1)), tmp_path)
    assert streams.slots.acquire(object())  # another visitor's stream holds the only slot
    chunk = (16_000, np.zeros(1_600, dtype=np.int16))
    with pytest.raises(gr.Error) as failure:
        streams.chunk(chunk, None, None, 0.5, _Request(ZH))
    assert failure.value.message == "实时转写正忙（同时最多 1 路）：请一分钟后再试，或上传一段录音"
    with pytest.raises(gr.Error, match=r"busy \(1 streams at once\)"):
        streams.chunk(chunk, None, None)


def test_language_list_starts_with_auto_detect_and_names_common_languages_for_the_visitor():
    choices = speech.language_choices()
    assert choices[0][1] == "auto" and choices[0][0].key == "speech.language.auto"
    whisper = whisper_languages()
    assert [code for _, code in choices[1:]] == sorted(whisper, key=lambda code: whisper[code].title())
    for code in speech.NAMED_LANGUAGES:  # the catalogue's English name is Whisper's own
        assert i18n.text(f"speech.language.{code}", "en") == whisper[code].title()
    assert i18n.text("speech.language.zh", "zh-CN") == "中文"
