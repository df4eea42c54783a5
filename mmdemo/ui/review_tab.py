"""The Review tab: the stored flags, filtered; one opened with its inputs and results; export; re-run in compare.

Media shown here are copies in a temporary folder (Gradio serves files from there), never the store itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from mmdemo import registry
from mmdemo.compare import short_name
from mmdemo.errors import InputError, VisitorError
from mmdemo.flags import FlagStore
from mmdemo.flags.export import export
from mmdemo.ui.common import TabParts, task_title
from mmdemo.ui.compare_panel import Opener
from mmdemo.ui.i18n import localized, message, t

VIEW_ROOT = Path(tempfile.gettempdir()) / "mmdemo-review"
# The table's columns after the thumbnail's, as catalogue keys (the headers are written in the visitor's language).
HEADERS = ("review.column.when", "review.column.task", "review.column.rating", "review.column.models",
           "review.column.answer", "review.column.note", "review.column.id")
DATATYPES = ["html", "str", "str", "str", "str", "str", "str", "str"]  # the first: a thumbnail or a player mark
THUMBNAIL_PX = 48
MARKS = {"up": "👍", "down": "👎"}
ALL = "all"
MAX_ROWS = 500  # the newest; narrow the filters to see older ones


def _viewable(store: FlagStore, reference: Mapping[str, Any]) -> str | None:
    """A temporary copy of a flagged file that Gradio may serve; None if the store no longer has it."""
    try:
        source = store.media_path(reference)
    except VisitorError:
        return None
    target = VIEW_ROOT / source.name
    if not target.exists():
        VIEW_ROOT.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{source.name}.{hashlib.sha1(str(target).encode()).hexdigest()[:6]}")
        shutil.copyfile(source, partial)
        partial.replace(target)
    return str(target)


def _answer(record: Mapping[str, Any]) -> str:
    task = registry.get(record["task"]) if record.get("task") in registry.names() else None
    answers = []
    for entry in record.get("results", []):
        view = task.compare_view(entry["result"]) if task and entry.get("result") else None
        answers.append(view.text if view else f"⚠️ {entry.get('error', '')}")
    text = " | ".join(answers)
    return text if len(text) <= 120 else text[:119] + "…"


def _thumbnail(store: FlagStore, record: Mapping[str, Any]) -> str:
    """A small inline JPEG of the flag's image (no file to serve), 🔊 for a recording, else nothing."""
    media = record.get("media", {})
    if "image" in media:
        try:
            with Image.open(store.media_path(media["image"])) as image:
                image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
                small = ImageOps.exif_transpose(image).convert("RGB")
                small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                buffer = io.BytesIO()
                small.save(buffer, "JPEG", quality=70)
            return f'<img src="data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}" alt="">'
        except (VisitorError, OSError, ValueError):
            return ""
    return "🔊" if "audio" in media else ""


def rows(store: FlagStore, found: list[dict[str, Any]]) -> list[list[str]]:
    """The table's rows; every cell but the thumbnail is plain text (a note is never rendered as HTML)."""
    return [[_thumbnail(store, r), r["time"][:16].replace("T", " "), r["task"], MARKS.get(r["rating"], r["rating"]),
             ", ".join(short_name(m) for m in r.get("models", [])), _answer(r), r.get("note", ""), r["id"]]
            for r in found]


def table_value(found_rows: list[list[str]]) -> dict[str, Any]:
    """The table's value, its headers in the request's language."""
    return {"headers": ["", *(t(key) for key in HEADERS)], "data": found_rows}


def build(store: FlagStore, parts: Mapping[str, TabParts], tabs: gr.Tabs) -> None:
    """The tab's components (call inside its gr.Tab) and wiring; `parts` are the task tabs it re-runs flags in."""
    tasks = [name for name, part in parts.items() if part.compare is not None]
    gr.Markdown(t("review.lead"), elem_classes="mm-lead")
    with gr.Row(equal_height=True):
        task = gr.Dropdown([(t("review.all_tasks"), ALL)] + [(task_title(n), n) for n in tasks], value=ALL,
                           label=t("review.task"), elem_id="review-task")
        model = gr.Textbox(label=t("review.model"), placeholder=t("review.model.placeholder"), elem_id="review-model")
        rating = gr.Radio([(t("review.all"), ALL), ("👍", "up"), ("👎", "down")], value=ALL, label=t("review.rating"),
                          elem_id="review-rating")
        since = gr.Textbox(label=t("review.since"), elem_id="review-since")
        until = gr.Textbox(label=t("review.until"), elem_id="review-until")
        refresh = gr.Button(t("review.show"), variant="primary", elem_id="review-show")
    # The headers follow the visitor's language: English in the page's config, then written when the page loads
    # and by each search.
    empty_table = localized(lambda: table_value([]))
    table = gr.Dataframe(empty_table(), datatype=DATATYPES, interactive=False, wrap=True, max_height=360,
                         elem_id="review-table", label=t("review.table"),
                         column_widths=["64px", "120px", "100px", "80px", "16%", "14%", "22%", "16%"])
    gr.on(None, empty_table, outputs=table, api_visibility="private", queue=False)
    ids = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            opened = gr.Markdown(elem_id="review-opened")
            image = gr.Image(label=t("review.image"), interactive=False, height=200, visible=False)
            audio = gr.Audio(label=t("review.audio"), interactive=False, visible=False)
            note = gr.Textbox(label=t("review.note"), interactive=False, elem_id="review-note")
        with gr.Column(scale=1):
            details = gr.JSON(label=t("review.details"))
    flag_id = gr.State(None)
    with gr.Row(equal_height=True):
        rerun_models = gr.Dropdown([], multiselect=True, max_choices=4, label=t("review.rerun_models"), scale=3,
                                   elem_id="review-rerun-models")
        rerun = gr.Button(t("review.rerun"), scale=1, elem_id="review-rerun")
        export_button = gr.Button(t("review.export"), scale=1, elem_id="review-export")
    exported = gr.File(label=t("review.exported"), interactive=False, height=90, elem_id="review-file")
    what = message("tab.review")

    def show(task_name, model_id, rating_value, since_value, until_value):
        found = store.find(task=None if task_name == ALL else task_name, model=(model_id or "").strip() or None,
                           rating=None if rating_value == ALL else rating_value,
                           since=(since_value or "").strip() or None, until=(until_value or "").strip() or None)
        found = found[:MAX_ROWS]
        return table_value(rows(store, found)), [r["id"] for r in found]

    filters = [task, model, rating, since, until]
    for trigger in (refresh.click, since.submit, until.submit, model.submit):
        trigger(localized(show, what=what), filters, [table, ids], api_visibility="private")

    def open_flag(shown_ids: list[str], evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        record = store.get(shown_ids[index])
        media = record.get("media", {})
        image_path = _viewable(store, media["image"]) if "image" in media else None
        audio_path = _viewable(store, media["audio"]) if "audio" in media else None
        header = (f"**{task_title(record['task'])}** · {MARKS.get(record['rating'], '')} · {record['time']}"
                  + (f" · {t('review.best', model=record['best'])}" if record.get("best") else ""))
        choices = parts[record["task"]].compare.models.choices
        details_value = {k: record.get(k) for k in ("inputs", "correction", "results")}
        return (header, gr.Image(value=image_path, visible=bool(image_path)),
                gr.Audio(value=audio_path, visible=bool(audio_path)), record.get("note", ""), details_value,
                record["id"], gr.Dropdown(choices=choices, value=record.get("models", [])[:2]))

    opened_views = [opened, image, audio, note, details, flag_id, rerun_models]
    table.select(localized(open_flag, what=what), ids, opened_views, api_visibility="private")

    def export_selection(shown_ids: list[str]):
        records = {r["id"]: r for r in store.records()}
        folder = Path(tempfile.mkdtemp(prefix="mmdemo-flags-"))
        chosen = [records[i] for i in shown_ids if i in records]
        return str(export(store, chosen, folder / f"flags-{chosen[0]['task'] if chosen else 'none'}.zip"))

    export_button.click(localized(export_selection, what=what), ids, exported, api_visibility="private")

    # Re-run: the flag's task tab opens in compare mode on its inputs.
    opener = Opener(parts, tabs)

    def rerun_flag(chosen_id: str | None, models: list[str] | None):
        if not chosen_id:
            raise InputError("error.review.nothing_open")
        record = store.get(chosen_id)
        given = dict(record.get("inputs", {}))
        for key, reference in record.get("media", {}).items():
            given[key] = _viewable(store, reference)
        return opener.values(record["task"], given, models or [])

    rerun.click(localized(rerun_flag, what=what), [flag_id, rerun_models], opener.outputs, api_visibility="private")
