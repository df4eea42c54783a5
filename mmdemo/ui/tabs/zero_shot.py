"""The zero-shot image classification tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

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

EXAMPLES = [
    ["skimage_chelsea.png", "cat, dog, rabbit, tiger"],
    ["skimage_coffee.png", "a cup of coffee, a cup of tea, a glass of wine"],
    ["skimage_rocket.jpg", "rocket, airplane, lighthouse, chimney"],
]
SCORING_NOTE = {
    "softmax": "Scores are a softmax over your labels: they sum to 1.",
    "sigmoid": "SigLIP scores each label independently (sigmoid): they need not sum to 1.",
}


def render(result: dict[str, Any] | None) -> tuple[Any, str]:
    if not result:
        return None, ""
    scores = {item["label"]: item["score"] for item in result["labels"]}
    return scores, f"{provenance_line(result)}<br><small>{SCORING_NOTE[result['scoring']]}</small>"


def draw_maps(result: dict[str, Any] | None, image: str | None) -> gr.AnnotatedImage:
    """The explained labels' relevance maps over the image (hidden without them)."""
    explanation = (result or {}).get("explanation")
    if not explanation or not image:
        return gr.AnnotatedImage(value=None, visible=False)
    value = overlay.annotated(overlay.display_image(image), explanation["maps"])
    return gr.AnnotatedImage(value=value, visible=True, label=explanation["note"])


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            image = image_input(label="Image", height=IMAGE_HEIGHT)
            labels = gr.Textbox(label=f"Candidate labels (2 to {runtime.settings.max_labels}, comma separated)",
                                placeholder="e.g. cat, dog, bird", lines=1, max_lines=6)
            examples("zero_shot", [[asset(name), text] for name, text in EXAMPLES], [image, labels])
            model = model_dropdown(runtime, "zero_shot")
            with gr.Row(equal_height=False):  # side by side: the button stays on a laptop's first screen
                button = gr.Button("Classify", variant="primary", scale=3)
                explain = gr.Checkbox(value=False, label="Explain (slower)",
                                      scale=2, min_width=160, container=False)
            with gr.Accordion("Prompt template", open=False):
                template = gr.Textbox(value=DEFAULT_TEMPLATE, label="Template ({} is replaced by each label)",
                                      max_lines=1)
                ensemble = gr.Checkbox(value=False, label="Ensemble 8 CLIP-style templates instead")
        with gr.Column():
            scores = gr.Label(label="Labels, best first", num_top_classes=runtime.settings.max_labels,
                              elem_id="zero_shot-scores")
            maps = gr.AnnotatedImage(label="Where the model looked (hover over a label to see its map)", visible=False,
                                     height=280, elem_id="zero_shot-maps")
            provenance = gr.Markdown(elem_id="zero_shot-provenance")
            result = result_json()
    inputs = {"image": image, "labels": labels, "model": model, "template": template, "ensemble": ensemble,
              "explain": explain}
    parts = wire(runtime, "zero_shot", button, inputs, result, render, [scores, provenance], submit=[labels])
    result.change(draw_maps, inputs=[result, image], outputs=maps, api_visibility="private", queue=False)
    parts.outputs["maps"] = maps
    return parts
