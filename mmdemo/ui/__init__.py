"""The Gradio app: one tab per registered task plus the Models panel. Gradio is imported only here."""

from __future__ import annotations

import logging

import gradio as gr

from mmdemo import collector, registry
from mmdemo.backends import create_runtime
from mmdemo.config import Settings, model_admin_enabled
from mmdemo.flags import open_store
from mmdemo.runtime import Runtime
from mmdemo.ui import api_only, chaining, evaluate_tab, gradio_patches, models_panel, page_language, review_tab
from mmdemo.ui.common import TabParts, task_description, task_title
from mmdemo.ui.compare_panel import Opener
from mmdemo.ui.i18n import I18N, language_switch, message, t
from mmdemo.ui.tabs import TABS

log = logging.getLogger(__name__)

WHERE_MODELS_RUN = {"local": "app.models.local", "ray": "app.models.ray"}  # catalogue keys, by backend

# What keeps every tab compact enough for a 1280×800 laptop screen (examples and the Run button without scrolling)
# and usable in a 400 px phone window.
CSS = """
/* width: 100% stops a narrow window from growing to the content's width (the page would scroll sideways) */
.gradio-container { max-width: 1280px !important; width: 100%; margin: 0 auto !important; padding-top: 8px !important; }
#mm-header h1 { font-size: 1.6rem; margin: 0 0 2px 0; }
/* the language switch sits in the header's top right corner, taking no height of its own */
.gradio-container { position: relative; }
#mm-language { position: absolute !important; top: 8px; right: clamp(12px, 2.5vw, 32px); width: auto !important;
               z-index: 10; background: transparent !important; }
#mm-language .wrap { gap: 4px !important; }
#mm-language label { padding: 2px 8px !important; margin: 0 !important; }
#mm-header h1 span { font-size: 1rem; font-weight: 400; opacity: 0.7; margin-left: 6px; }
#mm-header p { margin: 0; font-size: 0.9rem; }
.mm-lead p { margin: 0; }
/* examples as one short row each: a small thumbnail and its text, no header */
[id$="-examples"] table thead { display: none; }
[id$="-examples"] table td { padding: 1px 8px !important; text-align: left !important; }
[id$="-examples"] table .container.table,
[id$="-examples"] table img { width: 32px !important; height: 32px !important; }
/* compare mode's answers wrap between words, not inside them */
[id*="-compare-col"] [data-testid="highlighted-text"] .text { word-break: normal !important; }
/* an empty audio input as tall as an image input */
[id$="-audio"] button.upload-container { height: 140px !important; min-height: 0 !important; }
/* narrow side margins on a phone; not inside @media: Gradio scopes rules there to the content, below .main */
.gradio-container .main { padding-left: clamp(12px, 2.5vw, 32px) !important;
                          padding-right: clamp(12px, 2.5vw, 32px) !important; }
@media (max-width: 640px) { #mm-header h1 span { display: block; margin-left: 0; } }
"""

# The look and the languages of the app: passed to launch() (Gradio 6 takes theme and CSS there, not in Blocks), also
# by tests. Soft's fonts ship with Gradio, so an offline browser fetches nothing from outside. The middleware puts the
# script that picks the page's language before Gradio's own (mmdemo.ui.page_language).
STYLE = {"theme": gr.themes.Soft(spacing_size="sm"), "css": CSS, "i18n": I18N,
         "app_kwargs": page_language.app_kwargs()}


def build_demo(runtime: Runtime) -> gr.Blocks:
    """The whole app; building it loads no model."""
    # Sessions that render no block's config up front, a queue that waits for requests rather than looking every
    # millisecond: on the Gradio version the patches were written for (else Gradio's own, and one warning).
    gradio_patches.install()
    with gr.Blocks(title=t("app.title"), delete_cache=(3600, 3600)) as demo:
        gr.Markdown(t("app.header", models=message(WHERE_MODELS_RUN[runtime.settings.backend])), elem_id="mm-header")
        language_switch()
        parts: dict[str, TabParts] = {}  # task name -> its tab's components, for what links the tabs
        with gr.Tabs() as tabs:
            for name in registry.names():
                build_tab = TABS.get(name)
                if build_tab is None:
                    if registry.get(name).has_tab:
                        log.warning("Task %s has no tab builder; it is available through Runtime only", name)
                    continue
                with gr.Tab(task_title(name), id=name, elem_id=f"{name}-tab"):
                    gr.Markdown(task_description(name), elem_classes="mm-lead")
                    parts[name] = build_tab(runtime)
            chaining.link(parts, tabs)  # buttons that carry an image, a transcript, a caption between the tabs
            with gr.Tab(t("tab.evaluate"), id="evaluate", elem_id="evaluate-tab"):
                evaluate_tab.build(runtime, Opener(parts, tabs))
            store = open_store(runtime.settings)
            if store is not None and model_admin_enabled(runtime.settings):  # flags hold visitors' uploads
                with gr.Tab(t("tab.review"), id="review", elem_id="review-tab"):
                    review_tab.build(store, parts, tabs)
            with gr.Tab(t("tab.models"), id="models", elem_id="models-tab") as models_tab:
                report_fn, report, views = models_panel.build(runtime)
        models_tab.select(report_fn, outputs=report, api_visibility="private").then(
            models_panel.render, inputs=report, outputs=views, api_visibility="private")
        api_only.build(runtime, parts)
    demo.queue(default_concurrency_limit=runtime.settings.concurrency, max_size=runtime.settings.max_queue)
    return demo


def preload(runtime: Runtime, task_names: tuple[str, ...]) -> None:
    """Warm the default models of `task_names` ("all" for every task) before serving."""
    names = registry.names() if "all" in task_names else list(task_names)
    for name in names:
        key = runtime.preload(name)
        log.info("Preloaded %s for %s", key, name)


def launch(settings: Settings, *, runtime: Runtime | None = None, **kwargs) -> gr.Blocks:
    """Build the runtime (unless one built from `settings` is given) and the app, preload what was asked, and serve.

    Uploads over `settings.max_upload_bytes` are refused by the server (HTTP 413) before any handler sees them.
    """
    import mmdemo.tasks  # noqa: F401  (registers the built-in tasks)

    runtime = runtime or create_runtime(settings)
    if settings.preload:
        preload(runtime, settings.preload)
    demo = build_demo(runtime)
    block = not kwargs.pop("prevent_thread_lock", False)
    demo.launch(server_name=settings.host, server_port=settings.port, max_file_size=settings.max_upload_bytes,
                prevent_thread_lock=True, **STYLE, **kwargs)
    # Once the page is served: the first click finds the model code imported. Then the garbage collector resumes
    # (if app.py paused it); a preloaded model is not frozen with start-up's objects, since it may be evicted.
    runtime.import_model_code_in_background(then=lambda: collector.settle(freeze=not settings.preload))
    if block:
        demo.block_thread()
    return demo
