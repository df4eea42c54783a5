"""The Models panel: what the shared cache holds, and buttons to preload or unload models.

With model admin off (MMDEMO_MODEL_ADMIN; by default on a Space) the panel only reports: the buttons are hidden and
the /preload and /unload endpoints answer "error.models.admin_off", keeping their names so that a client gets that
line rather than "no such endpoint".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.config import env_var, model_admin_enabled
from mmdemo.errors import InputError
from mmdemo.runtime import Runtime
from mmdemo.ui.common import task_title
from mmdemo.ui.i18n import localized, message, t

# The table's columns, as catalogue keys: a Dataframe's headers are written at run time, in the visitor's language.
HEADERS = ("models.column.model", "models.column.device", "models.column.dtype", "models.column.mb",
           "models.column.load_s", "models.column.hits", "models.column.last_used", "models.column.in_use")


def admin_off() -> InputError:
    """The refusal of /preload and /unload where model admin is off (also the note on the panel)."""
    return InputError("error.models.admin_off", variable=env_var("model_admin"))


def table_value(rows: list[list[Any]]) -> dict[str, Any]:
    """The table's value with its headers in the request's language."""
    return {"headers": [t(key) for key in HEADERS], "data": rows}


def _model_cell(entry: dict[str, Any]) -> str:
    """The model, and with the Ray backend the replica holding it."""
    return f"{entry['model']} ({entry['replica']})" if "replica" in entry else entry["model"]


def _render(report: dict[str, Any] | None) -> tuple[str, Any, Any]:
    if not report:
        return "", table_value([]), gr.update()
    if report.get("backend") == "ray":  # each replica keeps its own models, up to a count
        limits = ", ".join(f"{r['replica']} {len(r['models'])}/{r['max_models']}" for r in report["replicas"])
        used = message("models.summary.ray", used=report["used_bytes"] / 1e6, count=len(report["replicas"]),
                       limits=limits or message("models.summary.none_running"))
    else:
        used = message("models.summary.budget", used=report["used_bytes"] / 1e6, budget=report["budget_bytes"] / 1e6)
    summary = t("models.summary", used=used, device=report["device"], dtype=report["dtype"], hits=report["hits"],
                misses=report["misses"], evictions=report["evictions"])
    rows = [
        [_model_cell(e), e["device"], e["dtype"], round(e["bytes"] / 1e6, 1), e["load_seconds"], e["hits"],
         time.strftime("%H:%M:%S", time.localtime(e["last_used"])), e["in_use"]]
        for e in report["entries"]
    ]
    resident = sorted({e["model"] for e in report["entries"]})
    return summary, table_value(rows), gr.update(choices=resident, value=resident[0] if resident else None)


# The report rendered into the panel's views (summary, table, the unload picker) in the visitor's language.
render = localized(_render, what=message("tab.models"))


def build(runtime: Runtime) -> tuple[Callable[[], dict[str, Any]], gr.JSON, list[gr.components.Component]]:
    """The panel's components; returns the report function, the hidden report and the views it renders into."""
    lead = "models.lead.ray" if runtime.settings.backend == "ray" else "models.lead.local"
    gr.Markdown(t(lead), elem_classes="mm-lead")
    summary = gr.Markdown(elem_id="models-summary")
    # English headers until the tab is opened: its select event renders the report in the visitor's language.
    table = gr.Dataframe(localized(table_value)([]), label=t("models.table"), interactive=False,
                         elem_id="models-table")
    admin = model_admin_enabled(runtime.settings)
    if not admin:
        # The page's config holds the English line; the page's load writes it in the visitor's language.
        refusal = localized(lambda: admin_off().render())
        note = gr.Markdown(refusal(), elem_id="models-admin-off")
        gr.on(None, refusal, outputs=note, api_visibility="private", queue=False)
    with gr.Row(visible=admin, elem_id="models-admin"):
        with gr.Column():
            task_names = registry.names()
            task = gr.Dropdown([(task_title(n), n) for n in task_names], value=task_names[0],
                               label=t("models.preload.task"), elem_id="models-task")
            preload = gr.Button(t("models.preload"), variant="primary", elem_id="models-preload")
        with gr.Column():
            resident = gr.Dropdown([], label=t("models.unload.model"), allow_custom_value=True,
                                   elem_id="models-resident")
            unload = gr.Button(t("models.unload"), variant="stop", elem_id="models-unload")
    refresh = gr.Button(t("models.refresh"), size="sm", elem_id="models-refresh")
    report = gr.JSON(visible=False)

    def models() -> dict[str, Any]:
        return runtime.cache_report()

    def require_admin() -> None:
        if not admin:  # before anything touches the cache
            raise admin_off()

    def preload_model(task_name: str, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:
        require_admin()
        if task_name not in registry.names():
            raise InputError("error.api.unknown_task", task=task_name, choices=", ".join(sorted(registry.names())))
        runtime.preload(task_name, on_load=lambda m: progress(0, desc=t("models.loading", model=m)))
        return runtime.cache_report()

    def unload_model(model_id: str) -> dict[str, Any]:
        require_admin()
        if not model_id:
            raise InputError("error.models.pick_resident")
        if not runtime.unload(model_id):
            raise InputError("error.models.not_loaded", model=model_id)
        return runtime.cache_report()

    views = [summary, table, resident]
    for button, fn, inputs, name in ((refresh, models, [], "models"), (preload, preload_model, [task], "preload"),
                                     (unload, unload_model, [resident], "unload")):
        button.click(localized(fn, what=message("tab.models")), inputs=inputs, outputs=report, api_name=name,
                     show_progress_on=[table]).success(render, inputs=report, outputs=views,
                                                       api_visibility="private", queue=False)
    return localized(models, what=message("tab.models")), report, views
