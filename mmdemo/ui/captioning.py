"""The image captioning tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from mmdemo.runtime import Runtime
from mmdemo.ui.common import asset, image_input, model_dropdown, provenance_line, wire

EXAMPLES = [["skimage_astronaut.jpg", ""], ["skimage_rocket.jpg", "a photography of"], ["skimage_coffee.png", ""]]


def render(result: dict[str, Any] | None) -> tuple[str, str]:
    if not result:
        return "", ""
    captions = result["captions"]
    text = captions[0] if len(captions) == 1 else "\n".join(f"{i}. {c}" for i, c in enumerate(captions, 1))
    return text or "(empty caption)", provenance_line(result)


def build(runtime: Runtime) -> None:
    with gr.Row(equal_height=False):
        with gr.Column():
            image = image_input(label="Image", height=320)
            prefix = gr.Textbox(label="Start of the caption (optional)", placeholder="e.g. a photography of",
                                max_lines=1)
            model = model_dropdown(runtime, "captioning")
            with gr.Accordion("Decoding", open=False):
                mode = gr.Radio([("Beam search", "beam"), ("Nucleus sampling", "sample")], value="beam",
                                label="Decoding")
                num_beams = gr.Slider(1, 8, value=3, step=1, label="Beams (beam search)")
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (sampling)")
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature (sampling)")
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed (sampling)")
                max_new_tokens = gr.Slider(5, 100, value=30, step=1, label="Max new tokens")
                num_captions = gr.Slider(1, 5, value=1, step=1, label="Number of distinct captions")
            button = gr.Button("Caption", variant="primary")
        with gr.Column():
            captions = gr.Textbox(label="Caption", lines=3, buttons=["copy"], interactive=False)
            provenance = gr.Markdown()
            with gr.Accordion("Result as JSON (what the API returns)", open=False):
                result = gr.JSON(show_label=False)
    gr.Examples([[asset(name), p] for name, p in EXAMPLES], inputs=[image, prefix], label="Examples")
    inputs = {"image": image, "prefix": prefix, "model": model, "mode": mode, "num_beams": num_beams,
              "top_p": top_p, "temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens,
              "num_captions": num_captions}
    wire(runtime, "captioning", button, inputs, result, render, [captions, provenance], submit=[prefix])
