"""The zero-shot image classification tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from mmdemo import i18n
from mmdemo.explain import overlay
from mmdemo.runtime import Runtime
from mmdemo.tasks.zero_shot import DEFAULT_TEMPLATE
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
from mmdemo.ui.i18n import localized, t
from mmdemo.ui.language_hints import english_hint, translated_note, watch_for_cjk

EXAMPLES = [
    ["skimage_chelsea.png", "cat, dog, rabbit, tiger"],
    ["skimage_coffee.png", "a cup of coffee, a cup of tea, a glass of wine"],
    ["skimage_rocket.jpg", "rocket, airplane, lighthouse, chimney"],
]
SCORING_NOTE = {"softmax": "zero_shot.scoring.softmax", "sigmoid": "zero_shot.scoring.sigmoid"}  # catalogue keys


def render(result: dict[str, Any] | None) -> tuple[Any, str]:
    if not result:
        return None, ""
    scores = {item["label"]: item["score"] for item in result["labels"]}
    return scores, f"{provenance_line(result)}<br><small>{i18n.text(SCORING_NOTE[result['scoring']])}</small>"


def explanation_note(result: dict[str, Any]) -> str:
    """The explanation's note in the visitor's language: the method, and how many of the labels have a map."""
    explanation = result["explanation"]
    if explanation["method"] != "chefer-relevance":
        return explanation["note"]
    explained, total = len(explanation["maps"]), len(result["labels"])
    if explained < total:
        return translated_note(explanation["note"], "zero_shot.explain.relevance.top", explained=explained,
                               total=total)
    return translated_note(explanation["note"], "zero_shot.explain.relevance")


def draw_maps(result: dict[str, Any] | None, image: str | None) -> gr.AnnotatedImage:
    """The explained labels' relevance maps over the image (hidden without them)."""
    explanation = (result or {}).get("explanation")
    if not explanation or not image:
        return gr.AnnotatedImage(value=None, visible=False)
    value = overlay.annotated(overlay.display_image(image), explanation["maps"])
    return gr.AnnotatedImage(value=value, visible=True, label=explanation_note(result))


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            image = image_input(label=t("tabs.image"), height=IMAGE_HEIGHT)
            labels = gr.Textbox(label=t("zero_shot.labels", limit=runtime.settings.max_labels),
                                placeholder=t("zero_shot.labels.placeholder"), lines=1, max_lines=6)
            hint = english_hint(t("zero_shot.english_hint"), "zero_shot-language-hint")
            examples("zero_shot", [[asset(name), text] for name, text in EXAMPLES], [image, labels])
            model = model_dropdown(runtime, "zero_shot")
            with gr.Row(equal_height=False):  # side by side: the button stays on a laptop's first screen
                button = gr.Button(t("zero_shot.button"), variant="primary", scale=3)
                explain = gr.Checkbox(value=False, label=t("tabs.explain"),
                                      scale=2, min_width=160, container=False)
            with gr.Accordion(t("zero_shot.template_options"), open=False):
                template = gr.Textbox(value=DEFAULT_TEMPLATE, label=t("zero_shot.template"), max_lines=1)
                ensemble = gr.Checkbox(value=False, label=t("zero_shot.ensemble"))
        with gr.Column():
            scores = gr.Label(label=t("zero_shot.scores"), num_top_classes=runtime.settings.max_labels,
                              elem_id="zero_shot-scores")
            maps = gr.AnnotatedImage(label=t("zero_shot.maps"), visible=False, height=280, elem_id="zero_shot-maps")
            provenance = gr.Markdown(elem_id="zero_shot-provenance")
            result = result_json()
    inputs = {"image": image, "labels": labels, "model": model, "template": template, "ensemble": ensemble,
              "explain": explain}
    watch_for_cjk(hint, [labels, template])
    parts = wire(runtime, "zero_shot", button, inputs, result, render, [scores, provenance], submit=[labels])
    result.change(localized(draw_maps), inputs=[result, image], outputs=maps, api_visibility="private", queue=False)
    parts.outputs["maps"] = maps
    return parts
