"""Endpoints with no tab of their own: /compare, /flag, /flags and /flags_export.

Their file inputs are real (hidden) image and audio components, so uploads go through Gradio's upload checks and
the same one-line errors as the tabs; a client can never name a server path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.compare import compare
from mmdemo.config import env_var, model_admin_enabled
from mmdemo.errors import InputError
from mmdemo.flags import FlagStore, open_store
from mmdemo.flags.export import export
from mmdemo.runtime import Runtime
from mmdemo.ui.common import TabParts, image_input
from mmdemo.ui.flag_row import save
from mmdemo.ui.i18n import localized

EXPORT_ROOT = Path(tempfile.gettempdir()) / "mmdemo-flag-exports"


def request_raw(parts: Mapping[str, TabParts], task_name: Any, options: Any, image: Any, audio: Any
                ) -> tuple[str, dict[str, Any]]:
    """A compared or flagged request's task and raw inputs, from the API's task, options and files."""
    if not isinstance(task_name, str) or task_name not in parts or parts[task_name].compare is None:
        known = ", ".join(name for name, part in parts.items() if part.compare is not None)
        raise InputError("error.api.unknown_task", task=str(task_name)[:40], choices=known)
    if options in (None, ""):
        options = {}
    if not isinstance(options, Mapping):
        raise InputError("error.api.options_not_object", example='{"question": "..."}')
    allowed = [name for name in parts[task_name].inputs if name not in ("image", "audio")]
    unknown = sorted(str(key) for key in options if key not in allowed)
    if unknown:
        raise InputError("error.api.unknown_option", option=unknown[0][:40], task=task_name,
                         allowed=", ".join(allowed))
    raw = {**options, "image": image, "audio": audio}
    return task_name, {name: value for name, value in raw.items() if name in parts[task_name].inputs}


def build(runtime: Runtime, parts: Mapping[str, TabParts]) -> None:
    """The endpoints' hidden components and events (call inside the Blocks)."""
    store = open_store(runtime.settings)
    admin = model_admin_enabled(runtime.settings)
    # Hidden: no visitor reads these labels; they name the API's parameters in its description.
    with gr.Group(visible=False):
        task_box = gr.Textbox(label="task")  # i18n: not text (a hidden API parameter's name)
        models_box = gr.JSON(label="models")  # i18n: not text (a hidden API parameter's name)
        options_box = gr.JSON(label="options")  # i18n: not text (a hidden API parameter's name)
        image_box = image_input(label="image")
        audio_box = gr.Audio(type="filepath", format=None, label="audio")  # i18n: not text (a hidden API parameter)
        rating_box, note_box, correction_box, best_box = (gr.Textbox(label=n) for n in
                                                          ("rating", "note", "correction", "best"))
        results_box = gr.JSON(label="results")  # i18n: not text (a hidden API parameter's name)
        model_box, since_box, until_box = (gr.Textbox(label=n) for n in ("model", "since", "until"))
        out = gr.JSON()
        zipped = gr.File()
        trigger = gr.Button()  # never shown or clicked: the endpoints are called through the API only

    # The handlers' argument names are the API's parameter names (the README's table lists them). Wrapped with
    # `localized`: an API client (no language cookie) gets the errors in English.
    @localized
    def compare_endpoint(task, models, options, image, audio, progress=gr.Progress()):
        name, raw = request_raw(parts, task, options, image, audio)
        return compare(runtime, name, raw, models or [], lambda message: progress(0, desc=message))

    @localized
    def flag(task, rating, note, correction, best, results, options, image, audio):
        if store is None:
            raise InputError("error.flagging.off", variable=env_var("flagging"))
        name, raw = request_raw(parts, task, options, image, audio)
        mode, shown = _flagged(results)
        media = {key for key in ("image", "audio") if key in parts[name].inputs}
        record = save(store, name, mode, str(rating or "").strip(), note, correction, best or None, shown, raw, media)
        return {"id": record["id"], "time": record["time"]}

    @localized
    def flags(task, model, rating, since, until):
        return {"flags": _listed(store, admin, task, model, rating, since, until)}

    @localized
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
    raise InputError("error.api.bad_results")


def _listed(store: FlagStore | None, admin: bool, task_name: Any, model: Any, rating: Any, since: Any,
            until: Any) -> list[dict[str, Any]]:
    if store is None:
        raise InputError("error.flagging.off", variable=env_var("flagging"))
    if not admin:
        raise InputError("error.flagging.review_off", variable=env_var("model_admin"))

    def clean(value: Any) -> str | None:
        text = str(value or "").strip()
        return text[:200] or None

    return store.find(task=clean(task_name), model=clean(model), rating=clean(rating), since=clean(since),
                      until=clean(until))
