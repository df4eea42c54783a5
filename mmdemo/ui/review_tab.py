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
from mmdemo.errors import VisitorError
from mmdemo.flags import FlagStore
from mmdemo.flags.export import export
from mmdemo.ui.common import TabParts
from mmdemo.ui.compare_panel import Opener

VIEW_ROOT = Path(tempfile.gettempdir()) / "mmdemo-review"
HEADERS = ["", "when (UTC)", "task", "rating", "models", "answer", "note", "id"]
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


def build(store: FlagStore, parts: Mapping[str, TabParts], tabs: gr.Tabs) -> None:
    """The tab's components (call inside its gr.Tab) and wiring; `parts` are the task tabs it re-runs flags in."""
    tasks = [name for name, part in parts.items() if part.compare is not None]
    gr.Markdown("Every 👍 / 👎 given under a result, with its inputs and every model's answer. Filter, open one, "
                "export the selection as a test set (the Evaluate tab and `python -m mmdemo.evaluate` read it), or "
                "re-run a flag on other models.", elem_classes="mm-lead")
    with gr.Row(equal_height=True):
        task = gr.Dropdown([("All tasks", ALL)] + [(registry.get(n).title, n) for n in tasks], value=ALL,
                           label="Task", elem_id="review-task")
        model = gr.Textbox(label="Model (id)", placeholder="e.g. Salesforce/blip-vqa-base", elem_id="review-model")
        rating = gr.Radio([("All", ALL), ("👍", "up"), ("👎", "down")], value=ALL, label="Rating",
                          elem_id="review-rating")
        since = gr.Textbox(label="Since (YYYY-MM-DD)", elem_id="review-since")
        until = gr.Textbox(label="Until (YYYY-MM-DD)", elem_id="review-until")
        refresh = gr.Button("Show", variant="primary", elem_id="review-show")
    table = gr.Dataframe(headers=HEADERS, datatype=DATATYPES, interactive=False, wrap=True, max_height=360,
                         elem_id="review-table", label="Flags, newest first: click one to open it",
                         column_widths=["64px", "120px", "100px", "80px", "16%", "14%", "22%", "16%"])
    ids = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            opened = gr.Markdown(elem_id="review-opened")
            image = gr.Image(label="Image", interactive=False, height=200, visible=False)
            audio = gr.Audio(label="Recording", interactive=False, visible=False)
            note = gr.Textbox(label="Note", interactive=False, elem_id="review-note")
        with gr.Column(scale=1):
            details = gr.JSON(label="Inputs and results")
    flag_id = gr.State(None)
    with gr.Row(equal_height=True):
        rerun_models = gr.Dropdown([], multiselect=True, max_choices=4, label="Re-run on models (2 to 4)", scale=3,
                                   elem_id="review-rerun-models")
        rerun = gr.Button("Open in compare mode", scale=1, elem_id="review-rerun")
        export_button = gr.Button("Export the selection (ZIP)", scale=1, elem_id="review-export")
    exported = gr.File(label="Test set: manifest.csv and the media", interactive=False, height=90,
                       elem_id="review-file")

    def show(task_name, model_id, rating_value, since_value, until_value):
        try:
            found = store.find(task=None if task_name == ALL else task_name, model=(model_id or "").strip() or None,
                               rating=None if rating_value == ALL else rating_value,
                               since=(since_value or "").strip() or None, until=(until_value or "").strip() or None)
        except VisitorError as e:
            raise gr.Error(str(e), print_exception=False) from e
        found = found[:MAX_ROWS]
        return rows(store, found), [r["id"] for r in found]

    filters = [task, model, rating, since, until]
    for trigger in (refresh.click, since.submit, until.submit, model.submit):
        trigger(show, filters, [table, ids], api_visibility="private")

    def open_flag(shown_ids: list[str], evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        record = store.get(shown_ids[index])
        media = record.get("media", {})
        image_path = _viewable(store, media["image"]) if "image" in media else None
        audio_path = _viewable(store, media["audio"]) if "audio" in media else None
        header = (f"**{registry.get(record['task']).title}** · {MARKS.get(record['rating'], '')} · {record['time']}"
                  + (f" · best: `{record['best']}`" if record.get("best") else ""))
        choices = parts[record["task"]].compare.models.choices
        details_value = {k: record.get(k) for k in ("inputs", "correction", "results")}
        return (header, gr.Image(value=image_path, visible=bool(image_path)),
                gr.Audio(value=audio_path, visible=bool(audio_path)), record.get("note", ""), details_value,
                record["id"], gr.Dropdown(choices=choices, value=record.get("models", [])[:2]))

    opened_views = [opened, image, audio, note, details, flag_id, rerun_models]
    table.select(open_flag, ids, opened_views, api_visibility="private")

    def export_selection(shown_ids: list[str]):
        records = {r["id"]: r for r in store.records()}
        try:
            folder = Path(tempfile.mkdtemp(prefix="mmdemo-flags-"))
            chosen = [records[i] for i in shown_ids if i in records]
            return str(export(store, chosen, folder / f"flags-{chosen[0]['task'] if chosen else 'none'}.zip"))
        except VisitorError as e:
            raise gr.Error(str(e), print_exception=False) from e

    export_button.click(export_selection, ids, exported, api_visibility="private")

    # Re-run: the flag's task tab opens in compare mode on its inputs.
    opener = Opener(parts, tabs)

    def rerun_flag(chosen_id: str | None, models: list[str] | None):
        if not chosen_id:
            raise gr.Error("Open a flag first (click a row)", print_exception=False)
        record = store.get(chosen_id)
        given = dict(record.get("inputs", {}))
        for key, reference in record.get("media", {}).items():
            given[key] = _viewable(store, reference)
        return opener.values(record["task"], given, models or [])

    rerun.click(rerun_flag, [flag_id, rerun_models], opener.outputs, api_visibility="private")
