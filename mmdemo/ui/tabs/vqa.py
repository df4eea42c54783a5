"""The visual question answering tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from mmdemo import i18n
from mmdemo.explain import overlay
from mmdemo.runtime import Runtime
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

EXAMPLES = [
    ["skimage_chelsea.png", "What animal is this?"],
    ["skimage_coffee.png", "What is in the cup?"],
    ["skimage_astronaut.jpg", "What is the person wearing?"],
]


def render(result: dict[str, Any] | None) -> tuple[Any, str]:
    if not result:
        return None, ""
    scored = [a for a in result["answers"] if a["score"] is not None]
    answer = {a["answer"]: a["score"] for a in scored} if scored else result["answer"] or i18n.text("vqa.no_answer")
    return answer, provenance_line(result)


def draw_map(result: dict[str, Any] | None, image: str | None) -> gr.Image:
    """The answer's map blended over the image (hidden without one)."""
    maps = ((result or {}).get("explanation") or {}).get("maps")
    if not maps or not image:
        return gr.Image(value=None, visible=False)
    picture = overlay.heatmap(overlay.display_image(image), maps[0]["grid"])
    return gr.Image(value=picture, visible=True, label=i18n.text("tabs.map.looked_for", label=maps[0]["label"]))


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            image = image_input(label=t("tabs.image"), height=IMAGE_HEIGHT)
            question = gr.Textbox(label=t("vqa.question"), placeholder=t("vqa.question.placeholder"), max_lines=2)
            examples("vqa", [[asset(name), q] for name, q in EXAMPLES], [image, question])
            model = model_dropdown(runtime, "vqa")
            with gr.Row(equal_height=False):  # side by side: the button stays on a laptop's first screen
                button = gr.Button(t("vqa.button"), variant="primary", scale=3)
                explain = gr.Checkbox(value=False, label=t("tabs.explain"),
                                      scale=2, min_width=160, container=False)
        with gr.Column():
            answer = gr.Label(label=t("vqa.answer"), num_top_classes=5, elem_id="vqa-answer")
            answer_map = gr.Image(label=t("tabs.map"), visible=False, interactive=False, height=240,
                                  elem_id="vqa-map")
            provenance = gr.Markdown(elem_id="vqa-provenance")
            result = result_json()
    inputs = {"image": image, "question": question, "model": model, "explain": explain}
    parts = wire(runtime, "vqa", button, inputs, result, render, [answer, provenance], submit=[question])
    result.change(localized(draw_map), inputs=[result, image], outputs=answer_map, api_visibility="private",
                  queue=False)
    parts.outputs["map"] = answer_map
    return parts
