"""The Models panel: what the shared cache holds, and buttons to preload or unload models.

With model admin off (MMDEMO_MODEL_ADMIN; by default on a Space) the panel only reports: the buttons are hidden and
the /preload and /unload endpoints answer ADMIN_OFF, keeping their names so that a client gets that line rather
than "no such endpoint".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.config import env_var, model_admin_enabled
from mmdemo.errors import InputError, VisitorError
from mmdemo.runtime import Runtime

HEADERS = ["model", "device", "dtype", "MB", "load s", "hits", "last used", "in use"]
ADMIN_OFF = f"Model admin is off on this server: set {env_var('model_admin')}=1 to preload or unload models"


def _model_cell(entry: dict[str, Any]) -> str:
    """The model, and with the Ray backend the replica holding it."""
    return f"{entry['model']} ({entry['replica']})" if "replica" in entry else entry["model"]


def render(report: dict[str, Any] | None) -> tuple[str, list[list[Any]], Any]:
    if not report:
        return "", [], gr.update()
    if report.get("backend") == "ray":  # each replica keeps its own models, up to a count
        limits = ", ".join(f"{r['replica']} {len(r['models'])}/{r['max_models']}" for r in report["replicas"])
        used = (f"**{report['used_bytes'] / 1e6:,.0f} MB held by {len(report['replicas'])} Ray Serve replicas** "
                f"(models per replica: {limits or 'none running'})")
    else:
        used = f"**{report['used_bytes'] / 1e6:,.0f} MB of {report['budget_bytes'] / 1e6:,.0f} MB budget used**"
    summary = (
        f"{used} on {report['device']} ({report['dtype']} arithmetic) · hits {report['hits']} · "
        f"misses {report['misses']} · evictions {report['evictions']}"
    )
    rows = [
        [_model_cell(e), e["device"], e["dtype"], round(e["bytes"] / 1e6, 1), e["load_seconds"], e["hits"],
         time.strftime("%H:%M:%S", time.localtime(e["last_used"])), e["in_use"]]
        for e in report["entries"]
    ]
    resident = sorted({e["model"] for e in report["entries"]})
    return summary, rows, gr.update(choices=resident, value=resident[0] if resident else None)


def build(runtime: Runtime) -> tuple[Callable[[], dict[str, Any]], gr.JSON, list[gr.components.Component]]:
    """The panel's components; returns the report function, the hidden report and the views it renders into."""
    if runtime.settings.backend == "ray":
        lead = ("The models run on Ray Serve: each replica of a task family keeps its own models, and evicts the least "
                "recently used one when it holds as many as serve_config.yaml allows.")
    else:
        lead = ("Every tab shares one model cache: a model used by two tabs is loaded once. "
                "Least recently used models are evicted when a new one would exceed the memory budget.")
    gr.Markdown(lead, elem_classes="mm-lead")
    summary = gr.Markdown(elem_id="models-summary")
    table = gr.Dataframe(headers=HEADERS, label="Resident models", interactive=False, elem_id="models-table")
    admin = model_admin_enabled(runtime.settings)
    if not admin:
        gr.Markdown(ADMIN_OFF, elem_id="models-admin-off")
    with gr.Row(visible=admin, elem_id="models-admin"):
        with gr.Column():
            task_names = registry.names()
            task = gr.Dropdown([(registry.get(n).title, n) for n in task_names], value=task_names[0],
                               label="Preload a tab's default model", elem_id="models-task")
            preload = gr.Button("Preload", variant="primary", elem_id="models-preload")
        with gr.Column():
            resident = gr.Dropdown([], label="Unload a resident model", allow_custom_value=True,
                                   elem_id="models-resident")
            unload = gr.Button("Unload", variant="stop", elem_id="models-unload")
    refresh = gr.Button("Refresh", size="sm", elem_id="models-refresh")
    report = gr.JSON(visible=False)

    def models() -> dict[str, Any]:
        return runtime.cache_report()

    def require_admin() -> None:
        if not admin:  # before anything touches the cache
            raise gr.Error(ADMIN_OFF, print_exception=False)

    def preload_model(task_name: str, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:
        require_admin()
        try:
            runtime.preload(task_name, on_load=lambda m: progress(0, desc=f"Loading {m}…"))
        except (VisitorError, KeyError) as e:
            raise gr.Error(str(e), print_exception=False) from e
        return runtime.cache_report()

    def unload_model(model_id: str) -> dict[str, Any]:
        require_admin()
        try:
            if not model_id:
                raise InputError("Pick a resident model to unload")
            if not runtime.unload(model_id):
                raise InputError(f"{model_id} is not loaded")
        except VisitorError as e:
            raise gr.Error(str(e), print_exception=False) from e
        return runtime.cache_report()

    views = [summary, table, resident]
    for button, fn, inputs, name in ((refresh, models, [], "models"), (preload, preload_model, [task], "preload"),
                                     (unload, unload_model, [resident], "unload")):
        button.click(fn, inputs=inputs, outputs=report, api_name=name, show_progress_on=[table]).success(
            render, inputs=report, outputs=views, api_visibility="private", queue=False)
    return models, report, views
