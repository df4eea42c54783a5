"""The image captioning tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from mmdemo import i18n
from mmdemo.explain import overlay
from mmdemo.runtime import Runtime
from mmdemo.tasks.captioning import DECODING_MODES
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
from mmdemo.ui.language_hints import translated_note

EXAMPLES = [["skimage_astronaut.jpg", ""], ["skimage_rocket.jpg", "a photography of"], ["skimage_coffee.png", ""]]


def render(result: dict[str, Any] | None) -> tuple[str, str]:
    if not result:
        return "", ""
    captions = result["captions"]
    text = captions[0] if len(captions) == 1 else "\n".join(f"{i}. {c}" for i, c in enumerate(captions, 1))
    return text or i18n.text("captioning.empty"), provenance_line(result)


def _word_maps(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    return ((result or {}).get("explanation") or {}).get("maps") or []


def draw_word(result: dict[str, Any] | None, image: str | None, choice: int | None) -> gr.Image:
    """The map of the chosen word (its index in the caption) blended over the image."""
    maps = _word_maps(result)
    if not maps or not image or choice is None or not 0 <= int(choice) < len(maps):
        return gr.Image(value=None, visible=False)
    item = maps[int(choice)]
    picture = overlay.heatmap(overlay.display_image(image), item["grid"])
    return gr.Image(value=picture, visible=True, label=i18n.text("tabs.map.looked_for", label=item["word"]))


def show_words(result: dict[str, Any] | None, image: str | None) -> tuple[gr.Radio, gr.Image]:
    """The explained caption's words to click, the first one's map shown; a note where there are no maps."""
    explanation = (result or {}).get("explanation")
    maps = _word_maps(result)
    if not explanation:
        return gr.Radio(choices=[], value=None, visible=False), gr.Image(value=None, visible=False)
    if not maps:
        return (gr.Radio(choices=[], value=None, visible=True, label=_note(explanation)),
                gr.Image(value=None, visible=False))
    choices = [(item["word"], i) for i, item in enumerate(maps)]
    return (gr.Radio(choices=choices, value=0, visible=True, label=i18n.text("captioning.words")),
            draw_word(result, image, 0))


def _note(explanation: dict[str, Any]) -> str:
    """The explanation's note in the visitor's language. A captioner without maps (method None) names its
    architecture, which the result does not record: that note stays English."""
    if explanation["method"] == "gradcam":
        return translated_note(explanation["note"], "captioning.explain.gradcam")
    return explanation["note"]


def build(runtime: Runtime) -> TabParts:
    with gr.Row(equal_height=False):
        with gr.Column():
            image = image_input(label=t("tabs.image"), height=IMAGE_HEIGHT)
            prefix = gr.Textbox(label=t("captioning.prefix"), placeholder=t("captioning.prefix.placeholder"),
                                max_lines=1)
            # Thumbnails only: a blank prefix column would look unfinished; a clicked example still fills its prefix.
            examples("captioning", [[asset(name), p] for name, p in EXAMPLES], [image, prefix], visible_columns=[0])
            model = model_dropdown(runtime, "captioning")
            with gr.Row(equal_height=False):  # side by side: the button stays on a laptop's first screen
                button = gr.Button(t("captioning.button"), variant="primary", scale=3)
                explain = gr.Checkbox(value=False, label=t("tabs.explain"),
                                      scale=2, min_width=160, container=False)
            with gr.Accordion(t("captioning.decoding_options"), open=False):
                mode = gr.Radio([(t(f"captioning.mode.{name}"), name) for name in DECODING_MODES], value="beam",
                                label=t("captioning.mode"))
                with gr.Row():
                    num_beams = gr.Slider(1, 8, value=3, step=1, label=t("captioning.num_beams"))
                    max_new_tokens = gr.Slider(5, 100, value=30, step=1, label=t("captioning.max_new_tokens"))
                with gr.Row():
                    top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label=t("captioning.top_p"))
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label=t("captioning.temperature"))
                with gr.Row():
                    num_captions = gr.Slider(1, 5, value=1, step=1, label=t("captioning.num_captions"))
                    seed = gr.Number(value=0, precision=0, minimum=0, label=t("captioning.seed"))
        with gr.Column():
            captions = gr.Textbox(label=t("captioning.caption"), lines=3, buttons=["copy"], interactive=False,
                                  elem_id="captioning-captions")
            words = gr.Radio([], label=t("captioning.words"), visible=False,
                             elem_id="captioning-words")
            word_map = gr.Image(label=t("tabs.map"), visible=False, interactive=False, height=240,
                                elem_id="captioning-word-map")
            provenance = gr.Markdown(elem_id="captioning-provenance")
            result = result_json()
    inputs = {"image": image, "prefix": prefix, "model": model, "mode": mode, "num_beams": num_beams,
              "top_p": top_p, "temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens,
              "num_captions": num_captions, "explain": explain}
    parts = wire(runtime, "captioning", button, inputs, result, render, [captions, provenance], submit=[prefix])
    result.change(localized(show_words), inputs=[result, image], outputs=[words, word_map], api_visibility="private",
                  queue=False)
    words.select(localized(draw_word), inputs=[result, image, words], outputs=word_map, api_visibility="private",
                 queue=False)
    parts.outputs.update(caption=captions, words=words, word_map=word_map)
    return parts
