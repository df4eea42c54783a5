"""The multimodal sentiment tab: text, image and speech in, one fused sentiment and why out."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from mmdemo import i18n
from mmdemo.runtime import Runtime
from mmdemo.tasks.sentiment.fusion import CONFIDENCE_GATED, METHODS, PRODUCT_OF_EXPERTS, WEIGHTED_AVERAGE
from mmdemo.tasks.sentiment.task import (
    _SST2_NEUTRAL_FACTOR,  # the number in SST2_MAPPING_NOTE, for its translation
    IMAGE_PROMPTS,
    LABELS,
    MODALITIES,
    SST2_MAPPING_NOTE,
    SST2_NEUTRAL_BELOW,
    VADER,
    VADER_MAPPING_NOTE,
    VADER_NEUTRAL_BAND,
    VADER_NOTE,
    VADER_SHARPNESS,
)
from mmdemo.ui.common import (
    IMAGE_HEIGHT,
    TabParts,
    asset,
    examples,
    image_input,
    model_dropdown,
    provenance_line,
    result_json,
    wire,
)
from mmdemo.ui.i18n import localized, message, t
from mmdemo.ui.language_hints import (
    english_hint,
    localized_table,
    relabel_on_load,
    translated_note,
    watch_for_cjk,
)

EXAMPLES = [
    ["What a wonderful, sunny day with my cat!", "skimage_chelsea.png", None],
    ["This coffee is cold and bitter. Terrible.", "skimage_coffee.png", None],
    [None, None, "jfk.flac"],
]
# Catalogue keys: each fusion method's name is sentiment.method.<method>, its formula sentiment.method.<method>.note.
CHART_TITLES = {
    WEIGHTED_AVERAGE: "sentiment.chart.share",
    CONFIDENCE_GATED: "sentiment.chart.share",
    PRODUCT_OF_EXPERTS: "sentiment.chart.evidence",
}
TABLE_HEADERS = ("sentiment.table.modality", "sentiment.table.says", *(f"sentiment.class.{c}" for c in LABELS),
                 "sentiment.table.weight", "sentiment.table.certainty")
# The result's English notes on how a text model's verdict becomes three classes, with their translations.
MAPPING_NOTES = {
    VADER_MAPPING_NOTE: message("sentiment.note.vader_mapping", sharpness=VADER_SHARPNESS, band=VADER_NEUTRAL_BAND),
    SST2_MAPPING_NOTE: message("sentiment.note.sst2_mapping", factor=_SST2_NEUTRAL_FACTOR, below=SST2_NEUTRAL_BELOW),
}


def _class(label: str) -> str:
    """A sentiment class ("positive") in the visitor's language."""
    return i18n.text(f"sentiment.class.{label}")


def _modality(modality: str) -> str:
    return i18n.text(f"sentiment.modality.{modality}")


def _verdict(p: dict[str, float], label: str) -> str:
    return f"{_class(label)} {p[label]:.2f}"


def _note(note: str) -> str:
    known = MAPPING_NOTES.get(note)
    return translated_note(note, known.key, **known.params) if known else note


def render(result: dict[str, Any] | None) -> tuple[Any, str, list[list[Any]], Any, str, str]:
    """The views of a result in the visitor's language; the table as rows (`render_views` gives them headers)."""
    if not result:
        return None, "", [], None, "", ""
    method = result["method"]
    given = i18n.text("sentiment.list_separator").join(_modality(row["modality"]) for row in result["modalities"])
    lines = [i18n.text("sentiment.summary", label=_class(result["label"]).title(), modalities=given,
                       method=i18n.text(f"sentiment.method.{method}.note"))]
    if result["ablation"]:
        parts = []
        for item in result["ablation"]:
            verdict = (_verdict(item["probabilities"], item["label"]) if item["label"]
                       else i18n.text("sentiment.ablation.undefined"))
            parts.append(i18n.text("sentiment.ablation.without", modality=_modality(item["without"]),
                                   verdict=verdict))
        lines.append(i18n.text("sentiment.ablation", parts=" · ".join(parts)))
    lines += [f"<small>{_note(note)}</small>" for note in result["notes"]]
    rows = [
        [_modality(row["modality"]), _class(row["label"]), *(round(row["probabilities"][c], 2) for c in LABELS),
         round(row["weight"], 2), round(row["certainty"], 2)]
        for row in result["modalities"]
    ]
    # The chart's columns stay the ones it was built with; its classes, modalities and titles are translated.
    chart = pd.DataFrame(
        [{"class": _class(c), "contribution": value, "modality": _modality(m)}
         for m, by_class in result["contributions"].items() for c, value in by_class.items()]
    )
    plot = gr.BarPlot(value=chart, sort=[_class(c) for c in LABELS], x_title=i18n.text("sentiment.chart.class"),
                      y_title=i18n.text(CHART_TITLES[method]), color_title=i18n.text("sentiment.chart.modality"))
    transcript = result["transcript"]
    probabilities = {_class(c): p for c, p in result["probabilities"].items()}
    return (probabilities, "\n\n".join(lines), rows, plot, transcript if transcript is not None else "",
            provenance_line(result))


def render_views(result: dict[str, Any] | None) -> tuple[Any, ...]:
    """`render`'s views, the table under headers in the visitor's language."""
    label, summary, rows, plot, transcript, provenance = render(result)
    return label, summary, localized_table(rows, TABLE_HEADERS), plot, transcript, provenance


def explanation_note(explanation: dict[str, Any]) -> str:
    """The word attributions' note in the visitor's language (English where it says more than the result's fields,
    e.g. that a long text was cut)."""
    key = f"sentiment.explain.{explanation['method']}"
    if not i18n.has(key):
        return explanation["note"]
    label = explanation.get("label")
    params = {"verdict": message(f"sentiment.class.{label}")} if label else {}
    return translated_note(explanation["note"], key, **params)


def show_word_scores(result: dict[str, Any] | None) -> gr.HighlightedText:
    """The text's words shaded by their attribution (-1..1), or hidden without one."""
    explanation = (result or {}).get("explanation")
    if not explanation:
        return gr.HighlightedText(value=None, visible=False)
    words = [(item["word"] + " ", item["score"]) for item in explanation["words"]]
    return gr.HighlightedText(value=words, visible=True, label=explanation_note(explanation))


def text_model_dropdown(runtime: Runtime) -> gr.Dropdown:
    """The curated text models plus VADER, which needs no download (the offline default without them)."""
    return model_dropdown(runtime, "sentiment", label=t("sentiment.text_model"), extra=[(VADER, VADER_NOTE, True)])


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            text = gr.Textbox(label=t("sentiment.text"), lines=1, max_lines=4,
                              placeholder=t("sentiment.text.placeholder"))
            with gr.Row():  # a little lower than the other tabs' images: the text box sits above
                image = image_input(label=t("tabs.image"), height=IMAGE_HEIGHT - 20)
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None,
                                 label=t("tabs.speech"))
            examples("sentiment", [[words, asset(i) if i else None, asset(a) if a else None]
                      for words, i, a in EXAMPLES],
                     [text, image, audio])
            method = gr.Radio([(t(f"sentiment.method.{m}"), m) for m in METHODS], value=WEIGHTED_AVERAGE,
                              label=t("sentiment.method"))
            explain = gr.Checkbox(value=False, label=t("sentiment.explain"))
            button = gr.Button(t("sentiment.button"), variant="primary")
            with gr.Accordion(t("sentiment.options"), open=False):
                gr.Markdown(t("sentiment.options.lead"))
                weights = {m: gr.Slider(0, 5, value=1, step=0.1, label=t(f"sentiment.weight.{m}")) for m in MODALITIES}
                text_model = text_model_dropdown(runtime)
                # The zero-shot and speech tabs' own lists: the same model is one shared cache entry.
                image_model = model_dropdown(runtime, "zero_shot", label=t("sentiment.image_model"))
                speech_model = model_dropdown(runtime, "speech", label=t("sentiment.speech_model"))
                gr.Markdown(t("sentiment.prompts.lead"))
                prompts = {label: gr.Textbox(value="\n".join(IMAGE_PROMPTS[label]), lines=4,
                                             label=t(f"sentiment.prompts.{label}")) for label in LABELS}
                hint = english_hint(t("sentiment.prompts.english_hint"), "sentiment-language-hint")
        with gr.Column():
            fused = gr.Label(label=t("sentiment.fused"), num_top_classes=len(LABELS), elem_id="sentiment-fused")
            summary = gr.Markdown()
            word_scores = gr.HighlightedText(label=t("sentiment.words"), visible=False, show_legend=False,
                                             elem_id="sentiment-words")
            # English headers until the page's load event writes them in the visitor's language (a Dataframe's
            # headers show no translation markers).
            table = gr.Dataframe(localized_table([], TABLE_HEADERS), label=t("sentiment.table"), interactive=False,
                                 elem_id="sentiment-table")
            chart = gr.BarPlot(x="class", y="contribution", color="modality", sort=list(LABELS),
                               label=t("sentiment.chart"), elem_id="sentiment-chart")
            transcript = gr.Textbox(label=t("sentiment.transcript"), interactive=False,
                                    placeholder=t("sentiment.transcript.placeholder"))
            provenance = gr.Markdown(elem_id="sentiment-provenance")
            result = result_json()
    inputs = {
        "text": text, "image": image, "audio": audio, "method": method,
        **{f"{m}_weight": slider for m, slider in weights.items()},
        "text_model": text_model, "image_model": image_model, "speech_model": speech_model,
        **{f"{label}_prompts": box for label, box in prompts.items()},
        "explain": explain,
    }
    watch_for_cjk(hint, list(prompts.values()))
    relabel_on_load(table, TABLE_HEADERS)
    parts = wire(runtime, "sentiment", button, inputs, result, render_views,
                 [fused, summary, table, chart, transcript, provenance], submit=[text])
    result.change(localized(show_word_scores), inputs=result, outputs=word_scores, api_visibility="private",
                  queue=False)
    parts.outputs["words"] = word_scores
    return parts
