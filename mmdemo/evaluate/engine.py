"""The evaluation runner behind the Evaluate tab and `python -m mmdemo.evaluate`: a test set through 1-4 models.

Every item goes through `Runtime.run`, the app's one request path (validation, cache, number formats). The items
of one model are submitted together from `runtime.max_batch` threads, so the local predictor's batcher joins them
into real batches (zero-shot, beam captioning); the models run one after another, so the cache's budget only ever
needs one of them. A row is one item × model: its inputs, answer, per-item metrics, or its one-line error.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmdemo import registry
from mmdemo.config import eval_item_limit
from mmdemo.errors import InputError, VisitorError
from mmdemo.evaluate import clip_score, metrics
from mmdemo.evaluate.archive import Workspace, open_data
from mmdemo.evaluate.manifest import TASKS, Item, find_manifest, items_from_files, items_from_rows, read_rows
from mmdemo.runtime import Runtime

log = logging.getLogger(__name__)

MAX_MODELS = 4
# What a sentiment manifest's label may say, -> the task's label (SST-2 writes 0/1).
SENTIMENT_LABELS = {"negative": "negative", "neg": "negative", "0": "negative", "neutral": "neutral",
                    "positive": "positive", "pos": "positive", "1": "positive"}
# The decoding an evaluation uses where the task has choices: the tabs' defaults (beam search batches).
CAPTION_OPTIONS = {"prefix": "", "mode": "beam", "num_beams": 3, "max_new_tokens": 30, "num_captions": 1}

Progress = Callable[[int, int, str], None]  # (rows done, rows in all, what is going on)


@dataclass(frozen=True)
class EvalOptions:
    labels: str = ""  # zero-shot: candidate labels for rows without a `labels` cell (comma separated)
    limit: int | None = None  # run only the first N items: a smoke check
    keep_media: bool = False  # copy the items' files next to the results (the tab's players and compare mode)


@dataclass
class EvalRun:
    """A finished (or cancelled) run: its items, rows and metrics."""

    task: str
    models: tuple[str, ...]
    items: list[Item]
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    seconds: float = 0.0
    skipped_files: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # what `report.write_all` wrote, by name


def check_request(runtime: Runtime, task_name: str, models: Sequence[str] | str | None) -> tuple[str, ...]:
    """The chosen task and models, checked before anything is read or run; InputError with the valid choices."""
    if task_name not in TASKS:
        raise InputError("error.eval.unknown_task", task=task_name, choices=", ".join(TASKS))
    if isinstance(models, str):
        models = models.split(",")
    chosen = tuple(dict.fromkeys(str(m).strip() for m in models or () if str(m).strip()))
    if not chosen:
        raise InputError("error.eval.no_model")
    if len(chosen) > MAX_MODELS:
        raise InputError("error.eval.too_many_models", count=len(chosen), limit=MAX_MODELS)
    task = registry.get(task_name)
    for model in chosen:
        if model not in task.extra_model_ids:
            task.model_spec(model, allow_custom=runtime.settings.allow_custom_models)
    return chosen


def load_items(task: str, root: Path, max_items: int, limit: int | None) -> tuple[list[Item], list[str]]:
    """The test set's items (manifest rows, else its files) and the files skipped, within the item limit."""
    manifest = find_manifest(root)
    if manifest is None:
        return items_from_files(task, root, max_items=limit or max_items, truncate=limit is not None)
    rows = read_rows(manifest, max_rows=limit or max_items, truncate=limit is not None)
    return items_from_rows(task, rows, manifest.parent, manifest.name), []


def _prepare(task: str, items: list[Item], options: EvalOptions) -> list[Item]:
    """Cells made uniform for the metrics (sentiment labels; zero-shot candidates and expected label), with a
    row's own problem as its error."""
    from mmdemo.tasks.zero_shot import parse_labels

    prepared = []
    for item in items:
        cells = dict(item.cells)
        problem = item.error
        if task == "sentiment" and cells.get("label") and not problem:
            label = SENTIMENT_LABELS.get(str(cells["label"]).strip().lower())
            if label is None:
                problem = f"label {cells['label']!r} is not one of negative, neutral, positive (or 0, 1)"
            cells["label"] = label
        if task == "zero_shot" and not problem:
            try:
                candidates = parse_labels(list(cells.get("labels") or ()) or options.labels, max_labels=10_000)
            except InputError as e:
                problem = f"candidate labels: {e}"
            else:
                cells["labels"] = candidates
                if cells.get("label"):
                    match = [c for c in candidates if c.casefold() == cells["label"].casefold()]
                    if match:
                        cells["label"] = match[0]
                    else:
                        problem = f"label {cells['label']!r} is not among the candidate labels"
        prepared.append(replace(item, cells=cells, error=problem))
    return prepared


def raw_request(task: str, item: Item, model: str) -> dict[str, Any]:
    """The raw inputs `Runtime.run` takes for this item on `model`: what the task's tab and API send."""
    media = {kind: str(path) for kind, path in item.media.items()}
    cells = item.cells
    if task == "vqa":
        return {"image": media.get("image"), "question": cells.get("question"), "model": model}
    if task == "captioning":
        return {"image": media.get("image"), "model": model, **CAPTION_OPTIONS}
    if task == "zero_shot":
        from mmdemo.tasks.zero_shot import DEFAULT_TEMPLATE

        return {"image": media.get("image"), "labels": list(cells.get("labels") or ()), "model": model,
                "template": DEFAULT_TEMPLATE, "ensemble": False}
    if task == "speech":
        return {"audio": media.get("audio"), "model": model, "language": cells.get("language") or "auto",
                "task": "transcribe", "timestamps": "none"}
    if task == "sentiment":
        return {"text": cells.get("text"), "image": media.get("image"), "audio": media.get("audio"),
                registry.get("sentiment").compare_input: model}
    raise InputError("error.eval.no_such_task", task=task)


def _answer(task: str, result: Mapping[str, Any], item: Item) -> dict[str, Any]:
    """The row's answer fields from the task's result."""
    if task == "vqa":
        return {"prediction": result["answer"]}
    if task == "captioning":
        return {"prediction": result["caption"]}
    if task == "zero_shot":
        ranking = [entry["label"] for entry in result["labels"]]
        return {"prediction": ranking[0], "ranking": ranking, "scores": [entry["score"] for entry in result["labels"]]}
    if task == "speech":
        return {"prediction": result["text"], "language": item.cells.get("language") or result["language"]}
    if task == "sentiment":
        return {"prediction": result["label"], "probabilities": result["probabilities"]}
    raise ValueError(task)


def _reference(task: str, item: Item) -> dict[str, Any]:
    cells = item.cells
    if task == "vqa":
        answers = cells.get("answers") or ((cells["answer"],) if cells.get("answer") else ())
        return {"question": cells.get("question", ""), "reference": " | ".join(answers)}
    if task == "captioning":
        refs = list(cells.get("reference") or ())
        return {"reference": " | ".join(refs), "references": refs}
    if task == "zero_shot":
        return {"reference": cells.get("label", ""), "expected": cells.get("label")}
    if task == "speech":
        return {"reference": cells.get("reference", "")}
    if task == "sentiment":
        return {"text": cells.get("text", ""), "reference": cells.get("label") or "", "expected": cells.get("label")}
    return {}


def _row(task: str, item: Item, model: str, runtime: Runtime) -> dict[str, Any]:
    """Run one item on one model; a visitor-facing failure becomes the row's error, as does anything unexpected."""
    raw = raw_request(task, item, model)
    row: dict[str, Any] = {"item": item.index, "file": item.name, "model": model,
                           "inputs": {key: value for key, value in raw.items() if key != model_input(task)},
                           **_reference(task, item), "prediction": "", "error": item.error}
    for kind, path in item.media.items():
        row["inputs"][kind] = item.cells.get(kind) or item.cells.get("file") or path.name  # as the set names it
    if item.error:
        return row
    try:
        result = runtime.run(task, raw)
    except VisitorError as e:
        row["error"] = str(e)
        return row
    except Exception as e:  # a bug or a broken model: the run goes on, the row says so, the log has the trace
        log.exception("Evaluating item %s on %s failed", item.name, model)
        row["error"] = f"{type(e).__name__} while running this item; the error was logged"
        return row
    row.update(_answer(task, result, item))
    row["ms"] = result["provenance"]["ms"]
    row["batch_size"] = result["provenance"]["batch_size"]
    return row


def model_input(task: str) -> str:
    """The raw input that names the model being evaluated (sentiment's is its text model)."""
    return registry.get(task).compare_input


def evaluate(runtime: Runtime, task: str, models: Sequence[str] | str, source: str | Path | Sequence[str | Path], *,
             options: EvalOptions = EvalOptions(), out_dir: Path | None = None, on_progress: Progress | None = None,
             cancel: threading.Event | None = None) -> EvalRun:
    """Run a test set through each model, score it and (with `out_dir`) write the results and report there.

    Args:
        runtime: the app's runtime (the same cache, batching and formats as the tabs).
        task: a task name ("speech", ...).
        models: 1-4 model ids (a list, or comma separated).
        source: a ZIP, a folder, or a folder upload's files.
        options: candidate labels, a limit, whether to keep the media next to the results.
        out_dir: where results.csv, results.jsonl, metrics.json and report.html go (None: nowhere).
        on_progress: told after each row (rows done, rows in all, a line with the time left).
        cancel: set to stop: rows under way finish, the rest are not run; the partial results are kept.
    Returns:
        The run; its working files are already deleted.
    Raises:
        InputError: a bad request, archive or manifest (one line), before any model runs.
    """
    from mmdemo.evaluate import report

    started = time.perf_counter()
    chosen = check_request(runtime, task, models)
    max_items = eval_item_limit(runtime.settings)
    if options.limit is not None and not 1 <= options.limit <= max_items:
        raise InputError("error.eval.limit_range", max_items=max_items, limit=options.limit)
    with Workspace() as workspace:
        root = open_data(source, workspace)
        items, skipped = load_items(task, root, max_items, options.limit)
        if task == "zero_shot" and not options.labels.strip() and not any(i.cells.get("labels") for i in items):
            raise InputError("error.eval.labels_needed")
        items = _prepare(task, items, options)
        run = EvalRun(task, chosen, items, skipped_files=skipped)
        _run_models(runtime, run, on_progress, cancel)
        run.metrics = score(run, runtime)
        run.seconds = time.perf_counter() - started
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            if options.keep_media:
                _keep_media(run, out_dir)
            run.files = report.write_all(run, out_dir)
    return run


def _run_models(runtime: Runtime, run: EvalRun, on_progress: Progress | None,
                cancel: threading.Event | None) -> None:
    """Each model in turn; its items from `max_batch` threads at once, so that they meet in the batcher."""
    total = len(run.items) * len(run.models)
    done = 0
    started = time.perf_counter()
    workers = max(1, runtime.max_batch)

    def one(item: Item, model: str) -> dict[str, Any] | None:
        if cancel is not None and cancel.is_set():
            return None
        return _row(run.task, item, model, runtime)

    for number, model in enumerate(run.models, start=1):
        rows: dict[int, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmdemo-eval") as pool:
            pending: set[Future] = {pool.submit(one, item, model) for item in run.items}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    row = None if future.cancelled() else future.result()
                    if row is None:
                        continue
                    rows[row["item"]] = row
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total, _progress_line(model, number, len(run.models), len(rows),
                                                                len(run.items), started, done, total))
                if cancel is not None and cancel.is_set():
                    for future in pending:
                        future.cancel()
        run.rows += [rows[item.index] for item in run.items if item.index in rows]
        if cancel is not None and cancel.is_set():
            run.cancelled = True
            return


def _progress_line(model: str, number: int, models: int, rows: int, items: int, started: float, done: int,
                   total: int) -> str:
    elapsed = time.perf_counter() - started
    left = elapsed / done * (total - done)
    return f"Model {number}/{models} {model}: item {rows}/{items}, about {left:.0f} s left"


def score(run: EvalRun, runtime: Runtime) -> dict[str, Any]:
    """Per-item metrics onto the rows; per-model metrics and comparisons as metrics.json holds them."""
    cells = {item.index: item.cells for item in run.items}
    if run.task == "captioning":
        _add_clip_scores(run, runtime)
    for row in run.rows:
        row.update(metrics.score_row(run.task, row, cells[row["item"]]))
    per_model = {model: metrics.summarize(run.task, [row for row in run.rows if row["model"] == model])
                 for model in run.models}
    comparison = metrics.compare_models(run.task, run.models, run.rows) if len(run.models) > 1 else {}
    notes = []
    if run.task == "captioning" and not clip_score.available(runtime):
        notes.append("CLIPScore needs the local backend (the models in this process): not computed")
    return {
        "task": run.task,
        "models": list(run.models),
        "items": len(run.items),
        "primary": {"metric": metrics.PRIMARY[run.task].name,
                    "higher_is_better": metrics.PRIMARY[run.task].higher_is_better},
        "cancelled": run.cancelled,
        "per_model": per_model,
        "comparison": comparison,
        "skipped_files": run.skipped_files,
        "notes": notes,
    }


def _add_clip_scores(run: EvalRun, runtime: Runtime) -> None:
    if not clip_score.available(runtime):
        return
    media = {item.index: item.media.get("image") for item in run.items}
    scored = [row for row in run.rows if not row.get("error") and row.get("prediction")]
    if not scored:
        return
    try:
        values = clip_score.clip_scores(runtime, [media[row["item"]] for row in scored],
                                        [row["prediction"] for row in scored])
    except VisitorError as e:  # CLIP is not on this machine, say
        run.skipped_files.append(f"CLIPScore not computed: {e}")
        return
    for row, value in zip(scored, values, strict=True):
        row["clip_score"] = value


def _keep_media(run: EvalRun, out_dir: Path) -> None:
    """Copy each item's files to out_dir/media/ (they outlive the working folder) and note them on its rows."""
    folder = out_dir / "media"
    folder.mkdir(exist_ok=True)
    kept: dict[int, dict[str, str]] = {}
    for item in run.items:
        for kind, path in item.media.items():
            target = folder / f"{item.index}-{kind}{path.suffix.lower()}"
            shutil.copyfile(path, target)
            kept.setdefault(item.index, {})[kind] = str(target)
    for row in run.rows:
        row["media"] = kept.get(row["item"], {})


def compare_request(row: Mapping[str, Any], task: str) -> tuple[str, dict[str, Any], str]:
    """What opens a result row in compare mode: (task, raw inputs with the kept media's paths, the row's model).

    Needs a run made with `EvalOptions(keep_media=True)` (the tab's) for the media paths.
    """
    raw = dict(row["inputs"])
    raw.update(row.get("media") or {})
    return task, raw, row["model"]
