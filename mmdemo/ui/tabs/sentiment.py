"""The multimodal sentiment tab: text, image and speech in, one fused sentiment and why out."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from mmdemo.runtime import Runtime
from mmdemo.tasks.sentiment.fusion import CONFIDENCE_GATED, PRODUCT_OF_EXPERTS, WEIGHTED_AVERAGE
from mmdemo.tasks.sentiment.task import IMAGE_PROMPTS, LABELS, MODALITIES, VADER, VADER_NOTE
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

EXAMPLES = [
    ["What a wonderful, sunny day with my cat!", "skimage_chelsea.png", None],
    ["This coffee is cold and bitter. Terrible.", "skimage_coffee.png", None],
    [None, None, "jfk.flac"],
]
METHODS = [
    ("Weighted average", WEIGHTED_AVERAGE),
    ("Confidence-gated", CONFIDENCE_GATED),
    ("Product of experts", PRODUCT_OF_EXPERTS),
]
METHOD_NOTES = {
    WEIGHTED_AVERAGE: "Weighted average: p = Σ w·p_m / Σ w, with your weights.",
    CONFIDENCE_GATED: "Confidence-gated: each modality weighs its own certainty, 1 − entropy / log 3; "
                      "an unsure modality counts less, a uniform one not at all.",
    PRODUCT_OF_EXPERTS: "Product of experts: p ∝ Π p_m (a sum of log-probabilities, floored at 1e-6); "
                        "every modality can veto a class.",
}
CHART_TITLES = {
    WEIGHTED_AVERAGE: "Share of the fused probability",
    CONFIDENCE_GATED: "Share of the fused probability",
    PRODUCT_OF_EXPERTS: "Evidence (centred log-probability)",
}
TABLE_HEADERS = ["modality", "says", *LABELS, "weight", "certainty"]


def _verdict(p: dict[str, float], label: str) -> str:
    return f"{label} {p[label]:.2f}"


def render(result: dict[str, Any] | None) -> tuple[Any, str, list[list[Any]], Any, str, str]:
    if not result:
        return None, "", [], None, "", ""
    method = result["method"]
    given = [row["modality"] for row in result["modalities"]]
    lines = [f"**{result['label'].title()}** from {', '.join(given)} · {METHOD_NOTES[method]}"]
    if result["ablation"]:
        parts = []
        for item in result["ablation"]:
            verdict = (_verdict(item["probabilities"], item["label"]) if item["label"]
                       else "undefined (the others weigh 0)")
            parts.append(f"without the {item['without']}: {verdict}")
        lines.append("Ablation · " + " · ".join(parts))
    lines += [f"<small>{note}</small>" for note in result["notes"]]
    rows = [
        [row["modality"], row["label"], *(round(row["probabilities"][c], 2) for c in LABELS),
         round(row["weight"], 2), round(row["certainty"], 2)]
        for row in result["modalities"]
    ]
    chart = pd.DataFrame(
        [{"class": c, "contribution": value, "modality": m}
         for m, by_class in result["contributions"].items() for c, value in by_class.items()]
    )
    plot = gr.BarPlot(value=chart, y_title=CHART_TITLES[method])
    transcript = result["transcript"]
    return (result["probabilities"], "\n\n".join(lines), rows, plot,
            transcript if transcript is not None else "", provenance_line(result))


def show_word_scores(result: dict[str, Any] | None) -> gr.HighlightedText:
    """The text's words shaded by their attribution (-1..1), or hidden without one."""
    explanation = (result or {}).get("explanation")
    if not explanation:
        return gr.HighlightedText(value=None, visible=False)
    words = [(item["word"] + " ", item["score"]) for item in explanation["words"]]
    return gr.HighlightedText(value=words, visible=True, label=explanation["note"])


def text_model_dropdown(runtime: Runtime) -> gr.Dropdown:
    """The curated text models plus VADER, which needs no download (the offline default without them)."""
    return model_dropdown(runtime, "sentiment", label="Text model (reads the text and the transcript)",
                          extra=[(VADER, VADER_NOTE, True)])


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            text = gr.Textbox(label="Text", lines=1, max_lines=4, placeholder="e.g. Best concert of my life!")
            with gr.Row():  # a little lower than the other tabs' images: the text box sits above
                image = image_input(label="Image", height=IMAGE_HEIGHT - 20)
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None, label="Speech")
            examples("sentiment", [[t, asset(i) if i else None, asset(a) if a else None] for t, i, a in EXAMPLES],
                     [text, image, audio])
            method = gr.Radio(METHODS, value=WEIGHTED_AVERAGE, label="Fusion")
            explain = gr.Checkbox(value=False, label="Explain: score each word of the text")
            button = gr.Button("Analyse", variant="primary")
            with gr.Accordion("Weights, models and image prompts", open=False):
                gr.Markdown("<small>Give any combination of text, image and speech; a missing modality is left "
                            "out, not counted as 0. The weights apply to the weighted average.</small>")
                weights = {m: gr.Slider(0, 5, value=1, step=0.1, label=f"{m.title()} weight") for m in MODALITIES}
                text_model = text_model_dropdown(runtime)
                # The zero-shot and speech tabs' own lists: the same model is one shared cache entry.
                image_model = model_dropdown(runtime, "zero_shot", label="Image model (zero-shot)")
                speech_model = model_dropdown(runtime, "speech",
                                              label="Speech model (transcribes for the text model)")
                gr.Markdown("<small>Image prompts: one per line; a class's probability is the mean of its prompts' "
                            "zero-shot scores. Blank restores the defaults.</small>")
                prompts = {label: gr.Textbox(value="\n".join(IMAGE_PROMPTS[label]), lines=4,
                                             label=f"{label.title()} prompts") for label in LABELS}
        with gr.Column():
            fused = gr.Label(label="Fused sentiment", num_top_classes=len(LABELS), elem_id="sentiment-fused")
            summary = gr.Markdown()
            word_scores = gr.HighlightedText(label="Each word's part in the text's verdict", visible=False,
                                             show_legend=False, elem_id="sentiment-words")
            table = gr.Dataframe(headers=TABLE_HEADERS, label="What each modality said", interactive=False,
                                 elem_id="sentiment-table")
            chart = gr.BarPlot(x="class", y="contribution", color="modality", sort=list(LABELS),
                               label="Each modality's contribution", y_title=CHART_TITLES[WEIGHTED_AVERAGE],
                               elem_id="sentiment-chart")
            transcript = gr.Textbox(label="Transcript of the recording", interactive=False,
                                    placeholder="Give a recording to see what the text model read from it")
            provenance = gr.Markdown(elem_id="sentiment-provenance")
            result = result_json()
    inputs = {
        "text": text, "image": image, "audio": audio, "method": method,
        **{f"{m}_weight": slider for m, slider in weights.items()},
        "text_model": text_model, "image_model": image_model, "speech_model": speech_model,
        **{f"{label}_prompts": box for label, box in prompts.items()},
        "explain": explain,
    }
    parts = wire(runtime, "sentiment", button, inputs, result, render,
                 [fused, summary, table, chart, transcript, provenance], submit=[text])
    result.change(show_word_scores, inputs=result, outputs=word_scores, api_visibility="private", queue=False)
    parts.outputs["words"] = word_scores
    return parts
