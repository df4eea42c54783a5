"""The Evaluate tab: a whole test set (a ZIP, a folder, or a ready-made set) through 1-4 models, with per-item
progress, a Cancel button that keeps the partial results, a sortable table worst first, and the downloads.

The work is `mmdemo.evaluate.engine.evaluate`, the CLI's too; this module only maps it onto components.
"""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from mmdemo import i18n, registry
from mmdemo.errors import InputError
from mmdemo.evaluate import engine, metrics, presets, report
from mmdemo.evaluate.manifest import TASKS
from mmdemo.runtime import Runtime
from mmdemo.ui.common import result_json, task_title
from mmdemo.ui.compare_panel import Opener
from mmdemo.ui.i18n import localized, message, t

OUTPUT_MAX_AGE_SECONDS = 3600  # a run's downloads and media stay this long (Gradio's own cache keeps uploads as long)
TABLE_THUMBNAIL_SIDE = 48  # px
DEFAULT_TASK = "zero_shot"
FIRST_COLUMNS = ("media", "item", "file", "model", "prediction")  # the results table's columns before a run
# The engine's notes that the tab shows in the visitor's language (a note is matched by its English text).
NOTE_KEYS = ("evaluate.note.no_clip_score",)

# Cancel flags of the runs under way, by browser session: the Cancel button sets its session's flag.
_CANCELS: dict[str, threading.Event] = {}
_CANCELS_LOCK = threading.Lock()


def model_choices(runtime: Runtime, task_name: str) -> tuple[list[tuple[str, str]], str]:
    """(label, id) choices for the task's models (sentiment's text models and VADER) and the default: the first
    one on this machine when the hub cannot be reached."""
    task = registry.get(task_name)
    choices = [(choice.spec.id, choice.available_offline) for choice in runtime.model_choices(task_name)]
    choices += [(model_id, True) for model_id in task.extra_model_ids]
    default = choices[0][0]
    if not runtime.hub_reachable():
        default = next((model_id for model_id, local in choices if local), default)
    return [(model_id, model_id) for model_id, _ in choices], default


def _output_folder() -> Path:
    """A fresh folder for one run's downloads and media, in Gradio's upload folder; older runs' are removed."""
    from gradio.utils import get_upload_folder

    parent = Path(get_upload_folder()) / "mmdemo-evaluations"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        if time.time() - old.stat().st_mtime > OUTPUT_MAX_AGE_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=parent))


def _thumbnail_markdown(path: str | None) -> str:
    if not path:
        return ""
    try:
        with Image.open(path) as image:
            image.thumbnail((TABLE_THUMBNAIL_SIDE, TABLE_THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=75)
    except Exception:  # an unreadable image is that row's error already
        return ""
    return f"![](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')})"


NUMBER_COLUMNS = frozenset({"item", "wer", "cer", "substitutions", "deletions", "insertions", "words", "vqa_accuracy",
                            "exact_match", "top1", "top5", "accuracy", "clip_score", "bleu"})


def column_title(name: str) -> str:
    """A column's or metric's title in the request's language; standard abbreviations (WER, BLEU-4, CLIPScore) as
    the report writes them."""
    key = f"evaluate.column.{name}"
    return t(key) if i18n.has(key) else report.SHOWN.get(name, (name,))[0]


def table(task: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[str], list[list[Any]]]:
    """The results table's header (in the request's language), column types and rows: a thumbnail (images), then
    the results files' columns; worst rows first."""
    names = [name for name in report.columns(task) if name not in ("ms", "batch_size")]
    header = [column_title("media")] + [column_title(name) for name in names]
    types = ["markdown"] + ["number" if name in NUMBER_COLUMNS else "str" for name in names]
    body = []
    for row in metrics.sort_worst_first(task, rows):
        flat = report.flat_row(task, row)
        media = row.get("media") or {}
        shown = _thumbnail_markdown(media.get("image")) or ("🔊" if media.get("audio") else "")
        cells = [round(v, 4) if isinstance(v, float) else ("" if v is None else v)
                 for v in (flat[name] for name in names)]
        body.append([shown, *cells])
    return header, types, body


# The summary table's titles, back to the metrics' names (report.summary_table gives the titles).
_METRIC_NAMES = {label: name for name, (label, _) in report.SHOWN.items()}


def summary_markdown(data: dict[str, Any]) -> str:
    """The per-model metrics, the models' differences and the run's notes, in the request's language."""
    header, rows = report.summary_table(data["per_model"])
    header = [column_title("model")] + [column_title(_METRIC_NAMES.get(title, title)) for title in header[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"`{row[0]}`" if i == 0 else cell for i, cell in enumerate(row)) + " |"
              for row in rows]
    comparison = data.get("comparison") or {}
    for entry in comparison.get("differences", []):
        lines.append(f"\n- {difference_line(entry)}")
    if comparison:
        lines.append("- " + t("evaluate.disagreements", disagree=len(comparison["disagreements"]),
                              wrong=len(comparison["all_wrong"])))
    if data.get("cancelled"):
        lines.insert(0, t("evaluate.cancelled") + "\n")
    for note in data.get("notes", []):
        lines.append(f"- {_note(note)}")
    return "\n".join(lines)


def difference_line(entry: dict[str, Any]) -> str:
    """report.difference_line in the request's language: 'whisper-base − whisper-tiny.en on WER: -3.1 points
    (95 % CI -6.0 to -0.4; lower is better), 9 items'."""
    names = {"model": entry["model"], "baseline": entry["baseline"], "metric": column_title(entry["metric"])}
    if "difference" not in entry:
        return t("evaluate.difference.none", **names)
    points = entry["metric"] not in ("clip_score", "bleu")  # rates are shown in percentage points
    scale = 100 if points else 1
    return t("evaluate.difference", **names, difference=entry["difference"] * scale, low=entry["low"] * scale,
             high=entry["high"] * scale, items=entry["items"],
             unit=message("evaluate.unit.points") if points else "",
             better=message("evaluate.better.higher" if entry["higher_is_better"] else "evaluate.better.lower"))


def _note(note: str) -> str:
    """An engine note in the request's language where the catalogue has it; else as the engine wrote it."""
    key = next((key for key in NOTE_KEYS if i18n.text(key, "en") == note), None)
    return t(key) if key else note


def progress_line(models: tuple[str, ...], done: int, total: int, elapsed: float) -> str:
    """'Model 1/2 openai/clip-vit-base-patch32: item 3/40, about 12 s left' in the request's language. The engine
    runs the models one after another, each on every item, so the rows done tell the model and the item."""
    items = max(total // max(len(models), 1), 1)
    number = min((done - 1) // items, len(models) - 1)
    return t("evaluate.progress", number=number + 1, count=len(models), model=models[number],
             item=done - number * items, items=items, left=elapsed / max(done, 1) * (total - done))


def build(runtime: Runtime, opener: Opener | None = None) -> None:
    """The Evaluate tab's components and events (API: /evaluate); with an `opener`, a clicked row can open in its
    task tab's compare mode, on the run's models."""
    choices, default = model_choices(runtime, DEFAULT_TASK)
    what = message("evaluate.what")
    gr.Markdown(t("evaluate.lead", max=engine.MAX_MODELS), elem_classes="mm-lead")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            task = gr.Dropdown([(task_title(name), name) for name in TASKS], value=DEFAULT_TASK,
                               label=t("evaluate.task"), elem_id="evaluate-task")
            # The sets' choice names are their names: the examples below show a dropdown's choice names as they are
            # (Gradio translates no marker there). What each set holds is the dropdown's info line.
            preset = gr.Dropdown([(t("evaluate.preset.none"), "")] + [(name, name) for name in presets.PRESETS],
                                 value="", label=t("evaluate.preset"), info=t("evaluate.preset.about"),
                                 elem_id="evaluate-preset")
            archive = gr.File(label=t("evaluate.archive"), file_types=[".zip"], elem_id="evaluate-archive", height=90)
            folder = gr.File(label=t("evaluate.folder"), file_count="directory", elem_id="evaluate-folder", height=90)
            models = gr.Dropdown(choices, value=[default], multiselect=True, max_choices=engine.MAX_MODELS,
                                 label=t("evaluate.models", max=engine.MAX_MODELS), elem_id="evaluate-models",
                                 allow_custom_value=True)  # the choices follow the task; the engine checks ids
            labels = gr.Textbox(label=t("evaluate.labels"), value="",
                                placeholder="cat, dog, bird",  # i18n: not text (labels for English models)
                                elem_id="evaluate-labels", max_lines=3)
            limit = gr.Number(label=t("evaluate.limit"), precision=0, value=0, minimum=0, elem_id="evaluate-limit")
            gr.Examples([[name, presets.preset_task(name)] for name in presets.PRESETS], inputs=[preset, task],
                        label=t("evaluate.examples"), elem_id="evaluate-examples", visible_columns=[0])
            with gr.Row():
                run_button = gr.Button(t("evaluate.run"), variant="primary", elem_id="evaluate-run")
                cancel_button = gr.Button(t("evaluate.cancel"), variant="stop", elem_id="evaluate-cancel")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="evaluate-summary")
            charts = gr.HTML(elem_id="evaluate-charts")
            # The headers follow the visitor's language: English in the page's config, then written when the page
            # loads and by each run's render.
            empty_table = localized(lambda: {"headers": [column_title(n) for n in FIRST_COLUMNS], "data": []})
            results = gr.Dataframe(empty_table(), label=t("evaluate.results"), interactive=False, wrap=True,
                                   max_height=480, datatype="markdown", elem_id="evaluate-results")
            gr.on(None, empty_table, outputs=results, api_visibility="private", queue=False)
            with gr.Row(visible=False) as detail:
                detail_image = gr.Image(label=t("evaluate.item"), height=200, interactive=False,
                                        elem_id="evaluate-item-image")
                detail_audio = gr.Audio(label=t("evaluate.item"), interactive=False, elem_id="evaluate-item-audio")
                with gr.Column():
                    detail_json = gr.JSON(label=t("evaluate.row"), elem_id="evaluate-item-row")
                    to_compare = gr.Button(t("evaluate.to_compare"), visible=opener is not None,
                                           elem_id="evaluate-compare")
            downloads = gr.File(label=t("evaluate.downloads"), file_count="multiple", elem_id="evaluate-downloads",
                                interactive=False)
            result = result_json()
    rows_state = gr.State([])

    def on_task(task_name: str) -> tuple[Any, Any]:
        task_choices, task_default = model_choices(runtime, task_name)
        return (gr.update(choices=task_choices, value=[task_default]),
                gr.update(visible=task_name == "zero_shot"))

    def on_preset(name: str | None) -> Any:
        return gr.update(value=presets.preset_task(name)) if name else gr.update()

    task.change(localized(on_task, what=what), inputs=task, outputs=[models, labels], api_visibility="private",
                queue=False)
    preset.change(localized(on_preset, what=what), inputs=preset, outputs=task, api_visibility="private",
                  queue=False)

    def evaluate(task: str, preset: str | None, archive: str | None, folder: list[str] | None,
                 models: list[str] | str | None, labels: str | None, limit: float | None,
                 session: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """Evaluate a test set; the API result is metrics.json's content plus the rows."""
        source = _source(preset, archive, folder)
        task_name = presets.preset_task(preset) if preset else task
        limit = int(limit) if limit not in (None, "", 0) else None
        model_ids = engine.check_request(runtime, task_name, models)
        key = getattr(session, "session_hash", None) or "api"
        cancel = threading.Event()
        with _CANCELS_LOCK:
            _CANCELS[key] = cancel
        out_dir = _output_folder()
        progress(0, desc=t("evaluate.reading"))
        started = time.perf_counter()

        def on_progress(done: int, total: int, _english: str) -> None:  # the engine's line, in the visitor's language
            progress((done, total), desc=progress_line(model_ids, done, total, time.perf_counter() - started),
                     unit="rows")

        try:
            run = engine.evaluate(
                runtime, task_name, models or [], source, out_dir=out_dir, cancel=cancel,
                options=engine.EvalOptions(labels=labels or "", limit=limit, keep_media=True), on_progress=on_progress)
        except Exception:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise  # `localized` shows the error in the visitor's language (an unexpected one logged)
        finally:
            with _CANCELS_LOCK:
                if _CANCELS.get(key) is cancel:
                    del _CANCELS[key]
        public_rows = [{k: v for k, v in row.items() if k != "media"} for row in run.rows]
        return ({**run.metrics, "rows": public_rows}, [str(path) for path in run.files.values()], run.rows)

    event = run_button.click(
        localized(evaluate, what=what), inputs=[task, preset, archive, folder, models, labels, limit],
        outputs=[result, downloads, rows_state], api_name="evaluate", show_progress_on=[summary],
        concurrency_id="evaluate", concurrency_limit=1)

    def render(data: dict[str, Any] | None, rows: list[dict[str, Any]]) -> tuple[Any, ...]:
        if not data:
            return "", "", None, gr.update(visible=False)
        header, types, body = table(data["task"], rows)
        charts_html = "".join(
            report.confusion_svg(s["confusion"]["labels"], s["confusion"]["matrix"], model)
            for model, s in data["per_model"].items() if s.get("confusion"))
        return (summary_markdown(data), charts_html, gr.update(value={"headers": header, "data": body}, datatype=types),
                gr.update(visible=False))

    def cleared() -> tuple[Any, ...]:
        return None, None, [], "", "", None, gr.update(visible=False)

    event.success(localized(render, what=what), inputs=[result, rows_state], outputs=[summary, charts, results, detail],
                  api_visibility="private", queue=False)
    event.failure(localized(cleared, what=what),
                  outputs=[result, downloads, rows_state, summary, charts, results, detail],
                  api_visibility="private", queue=False)

    def cancel_run(session: gr.Request) -> str:
        """Stop this visitor's run after the items under way; its partial results are kept."""
        with _CANCELS_LOCK:
            flag = _CANCELS.get(getattr(session, "session_hash", None) or "api")
        if flag is None:
            return t("evaluate.nothing_to_cancel")
        flag.set()
        return t("evaluate.cancelling")

    cancel_button.click(localized(cancel_run, what=what), outputs=summary, api_visibility="private", queue=False)

    def open_row(rows: list[dict[str, Any]], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the clicked row's item (image or player) and its whole row, as compare mode would open it."""
        values = evt.row_value or []
        header_index = 1  # the table's "item" column follows the thumbnail
        try:
            item, model = int(values[header_index]), values[header_index + 2]
        except (IndexError, TypeError, ValueError):
            return gr.update(visible=False), None, None, None
        row = next((r for r in rows if r["item"] == item and r["model"] == model), None)
        if row is None:
            return gr.update(visible=False), None, None, None
        media = row.get("media") or {}
        shown = {k: v for k, v in row.items() if k != "media"}
        return (gr.update(visible=True), gr.update(value=media.get("image"), visible="image" in media),
                gr.update(value=media.get("audio"), visible="audio" in media), shown)

    results.select(localized(open_row, what=what), inputs=rows_state,
                   outputs=[detail, detail_image, detail_audio, detail_json], api_visibility="private", queue=False)
    if opener is None:
        return

    def open_in_compare(shown: dict[str, Any] | None, rows: list[dict[str, Any]], data: dict[str, Any] | None):
        row = next((r for r in rows if shown and r["item"] == shown.get("item") and r["model"] == shown.get("model")),
                   None)
        if row is None or not data:
            raise InputError("error.evaluate.no_row")
        task_name, raw, model = engine.compare_request(row, data["task"])
        others = [m for m in data.get("models", []) if m != model]
        return opener.values(task_name, raw, [model, *others][:4])

    to_compare.click(localized(open_in_compare, what=what), [detail_json, rows_state, result], opener.outputs,
                     api_visibility="private")


def _source(preset_name: str | None, archive_path: str | None, folder_paths: list[str] | None) -> Any:
    """What to evaluate: a ready-made set, else the ZIP, else the folder; one line when nothing was given."""
    if preset_name:
        return presets.preset_files(preset_name)
    if archive_path:
        return Path(archive_path)
    if folder_paths:
        return list(folder_paths)
    raise InputError("error.evaluate.no_test_set")
