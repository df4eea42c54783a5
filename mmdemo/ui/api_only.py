"""Endpoints with no tab of their own: /compare, /flag, /flags and /flags_export.

Their file inputs are real (hidden) image and audio components, so uploads go through Gradio's upload checks and
the same one-line errors as the tabs; a client can never name a server path.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.compare import compare
from mmdemo.config import model_admin_enabled
from mmdemo.errors import InputError, VisitorError
from mmdemo.flags import FlagStore, open_store
from mmdemo.flags.export import export
from mmdemo.runtime import Runtime
from mmdemo.ui.common import TabParts, image_input
from mmdemo.ui.flag_row import save

log = logging.getLogger(__name__)

EXPORT_ROOT = Path(tempfile.gettempdir()) / "mmdemo-flag-exports"
FLAGGING_OFF = "Flagging is off on this app (MMDEMO_FLAGGING)"
REVIEW_OFF = "Listing and exporting flags is off on this app (MMDEMO_MODEL_ADMIN)"


def _visitor_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """VisitorError -> its one line as gr.Error; anything else logged, and one generic line."""

    @functools.wraps(fn)  # Gradio reads the signature (the inputs, a gr.Progress) through __wrapped__
    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VisitorError as e:
            raise gr.Error(str(e), print_exception=False) from e
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            raise gr.Error(f"{fn.__name__} failed unexpectedly ({type(e).__name__}); the error was logged",
                           print_exception=False) from e

    return handler


def request_raw(parts: Mapping[str, TabParts], task_name: Any, options: Any, image: Any, audio: Any
                ) -> tuple[str, dict[str, Any]]:
    """A compared or flagged request's task and raw inputs, from the API's task, options and files."""
    if not isinstance(task_name, str) or task_name not in parts or parts[task_name].compare is None:
        known = ", ".join(name for name, part in parts.items() if part.compare is not None)
        raise InputError(f"Unknown task {str(task_name)[:40]!r}: choose one of {known}")
    if options in (None, ""):
        options = {}
    if not isinstance(options, Mapping):
        raise InputError("Options must be a JSON object of the task's inputs, e.g. {\"question\": \"...\"}")
    allowed = [name for name in parts[task_name].inputs if name not in ("image", "audio")]
    unknown = sorted(str(key) for key in options if key not in allowed)
    if unknown:
        raise InputError(f"Unknown option {unknown[0][:40]!r} for {task_name}: use {', '.join(allowed)}")
    raw = {**options, "image": image, "audio": audio}
    return task_name, {name: value for name, value in raw.items() if name in parts[task_name].inputs}


def build(runtime: Runtime, parts: Mapping[str, TabParts]) -> None:
    """The endpoints' hidden components and events (call inside the Blocks)."""
    store = open_store(runtime.settings)
    admin = model_admin_enabled(runtime.settings)
    with gr.Group(visible=False):
        task_box = gr.Textbox(label="task")
        models_box = gr.JSON(label="models")
        options_box = gr.JSON(label="options")
        image_box = image_input(label="image")
        audio_box = gr.Audio(type="filepath", format=None, label="audio")
        rating_box, note_box, correction_box, best_box = (gr.Textbox(label=n) for n in
                                                          ("rating", "note", "correction", "best"))
        results_box = gr.JSON(label="results")
        model_box, since_box, until_box = (gr.Textbox(label=n) for n in ("model", "since", "until"))
        out = gr.JSON()
        zipped = gr.File()
        trigger = gr.Button()  # never shown or clicked: the endpoints are called through the API only

    # The handlers' argument names are the API's parameter names (the README's table lists them).
    @_visitor_errors
    def compare_endpoint(task, models, options, image, audio, progress=gr.Progress()):
        name, raw = request_raw(parts, task, options, image, audio)
        return compare(runtime, name, raw, models or [], lambda message: progress(0, desc=message))

    @_visitor_errors
    def flag(task, rating, note, correction, best, results, options, image, audio):
        if store is None:
            raise InputError(FLAGGING_OFF)
        name, raw = request_raw(parts, task, options, image, audio)
        mode, shown = _flagged(results)
        media = {key for key in ("image", "audio") if key in parts[name].inputs}
        record = save(store, name, mode, str(rating or "").strip(), note, correction, best or None, shown, raw, media)
        return {"id": record["id"], "time": record["time"]}

    @_visitor_errors
    def flags(task, model, rating, since, until):
        return {"flags": _listed(store, admin, task, model, rating, since, until)}

    @_visitor_errors
    def flags_export(task, model, rating, since, until):
        found = _listed(store, admin, task, model, rating, since, until)
        EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=EXPORT_ROOT))
        return str(export(store, found, folder / f"flags-{found[0]['task'] if found else 'none'}.zip"))

    trigger.click(compare_endpoint, [task_box, models_box, options_box, image_box, audio_box], out,
                  api_name="compare", concurrency_id="models", concurrency_limit=runtime.settings.concurrency)
    trigger.click(flag, [task_box, rating_box, note_box, correction_box, best_box, results_box, options_box,
                         image_box, audio_box], out, api_name="flag", concurrency_id="flags", concurrency_limit=4)
    filters = [task_box, model_box, rating_box, since_box, until_box]
    trigger.click(flags, filters, out, api_name="flags", concurrency_id="flags", concurrency_limit=4)
    trigger.click(flags_export, filters, zipped, api_name="flags_export", concurrency_id="flags", concurrency_limit=4)


def _flagged(results: Any) -> tuple[str, dict[str, Any]]:
    """A /flag call's results: a /compare output (compare mode) or one endpoint's result (single mode)."""
    if isinstance(results, Mapping) and isinstance(results.get("results"), list):
        return "compare", dict(results)
    if isinstance(results, Mapping) and "provenance" in results:
        return "single", dict(results)
    raise InputError("Results must be what /compare or a task's endpoint returned")


def _listed(store: FlagStore | None, admin: bool, task_name: Any, model: Any, rating: Any, since: Any,
            until: Any) -> list[dict[str, Any]]:
    if store is None:
        raise InputError(FLAGGING_OFF)
    if not admin:
        raise InputError(REVIEW_OFF)

    def clean(value: Any) -> str | None:
        text = str(value or "").strip()
        return text[:200] or None

    return store.find(task=clean(task_name), model=clean(model), rating=clean(rating), since=clean(since),
                      until=clean(until))
