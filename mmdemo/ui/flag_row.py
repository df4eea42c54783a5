"""👍 / 👎 under a result (single or compare), with a note and an optional correct answer, into the flag store."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.flags import FlagStore
from mmdemo.ui.i18n import localized, message, t


def media_inputs(inputs: Mapping[str, gr.components.Component]) -> set[str]:
    """The inputs whose values are uploaded files (kept in the store's media)."""
    return {name for name, component in inputs.items() if isinstance(component, gr.Image | gr.Audio)}


def results_of(task_name: str, mode: str, result: Mapping[str, Any] | None, raw: Mapping[str, Any]
               ) -> list[dict[str, Any]]:
    """The flag's per-model results: a single run's result, or the compare's results as they are."""
    if not result:
        return []
    if mode == "compare":
        return [dict(entry) for entry in result.get("results", [])]
    task = registry.get(task_name)
    return [{"model": raw.get(task.compare_input) or task.default_model.id, "result": dict(result),
             "ms": result.get("provenance", {}).get("ms")}]


def save(store: FlagStore, task_name: str, mode: str, rating: str, note: str, correction: str, best: str | None,
         result: Mapping[str, Any] | None, raw: Mapping[str, Any], media: set[str]) -> dict[str, Any]:
    """Store one flag from a tab's values; the record."""
    task = registry.get(task_name)
    kept = {name: value for name, value in raw.items() if name not in media and name != task.compare_input}
    return store.add(task=task_name, mode=mode, rating=rating, note=note, correction=correction, best=best,
                     inputs=kept, media={name: raw.get(name) for name in media},
                     results=results_of(task_name, mode, result, raw))


def build(store: FlagStore, task_name: str, inputs: Mapping[str, gr.components.Component], result: gr.JSON,
          mode: str = "single") -> gr.Radio | None:
    """The flag row under `result`; in compare mode also the "best" choice, returned so the compare can fill it."""
    media = media_inputs(inputs)
    names = list(inputs)
    prefix = f"{task_name}-{mode}-flag"
    with gr.Row(equal_height=True, elem_id=prefix):
        up = gr.Button(t("flag.up"), size="sm", min_width=90, scale=0, elem_id=f"{prefix}-up")
        down = gr.Button(t("flag.down"), size="sm", min_width=90, scale=0, elem_id=f"{prefix}-down")
        best = gr.Radio([], label=t("flag.best"), scale=2, elem_id=f"{prefix}-best") if mode == "compare" else None
        note = gr.Textbox(placeholder=t("flag.note"), label=t("flag.note"), show_label=False, max_lines=2, scale=4,
                          elem_id=f"{prefix}-note")
        correction = gr.Textbox(placeholder=t("flag.correction"), label=t("flag.correction"),
                                show_label=False, max_lines=1, scale=3,
                                elem_id=f"{prefix}-correction")
    status = gr.Markdown(elem_id=f"{prefix}-status")

    def flag(rating: str):
        def handler(note_text: str, correction_text: str, best_model: str | None, shown: dict[str, Any] | None,
                    *values: Any) -> tuple[str, str, str]:
            record = save(store, task_name, mode, rating, note_text, correction_text, best_model, shown,
                          dict(zip(names, values)), media)
            mark = "👍" if rating == "up" else "👎"
            return f"<small>{html.escape(t('flag.done', mark=mark, id=record['id']))}</small>", "", ""

        return localized(handler, what=message("flag.what"))

    for button, rating in ((up, "up"), (down, "down")):
        button.click(flag(rating), inputs=[note, correction, best or gr.State(None), result, *inputs.values()],
                     outputs=[status, note, correction], api_visibility="private", concurrency_id="flags",
                     concurrency_limit=4)
    return best
