"""The Gradio app: one tab per registered task plus the Models panel. Gradio is imported only here."""

from __future__ import annotations

import logging

import gradio as gr

from mmdemo import registry
from mmdemo.config import Settings
from mmdemo.runtime import Runtime
from mmdemo.ui import captioning, models_panel, sentiment, speech, vqa, zero_shot

log = logging.getLogger(__name__)

# Task name -> tab builder. A new task's tab: one module in ui/ plus one line here.
TAB_BUILDERS = {
    "vqa": vqa.build,
    "captioning": captioning.build,
    "zero_shot": zero_shot.build,
    "speech": speech.build,
    "sentiment": sentiment.build,
}

HEADER = """# mmdemo
Multimodal transformers in your browser: ask about an image, caption it, classify it with your own labels,
or transcribe speech. All tabs share one model cache; models load on first use."""

CSS = """
.gradio-container { max-width: 1200px !important; margin: auto; }
"""


def build_demo(runtime: Runtime) -> gr.Blocks:
    """The whole app; building it loads no model."""
    with gr.Blocks(title="mmdemo: multimodal transformers demos", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Tabs():
            for name in registry.names():
                build_tab = TAB_BUILDERS.get(name)
                if build_tab is None:
                    log.warning("Task %s has no tab builder; it is available through Runtime only", name)
                    continue
                task = registry.get(name)
                with gr.Tab(task.title, id=name):
                    gr.Markdown(task.description)
                    build_tab(runtime)
            with gr.Tab("Models", id="models") as models_tab:
                report_fn, report, views = models_panel.build(runtime)
        models_tab.select(report_fn, outputs=report, api_visibility="private").then(
            models_panel.render, inputs=report, outputs=views, api_visibility="private")
    demo.queue(default_concurrency_limit=runtime.settings.concurrency, max_size=runtime.settings.max_queue)
    return demo


def preload(runtime: Runtime, task_names: tuple[str, ...]) -> None:
    """Warm the default models of `task_names` ("all" for every task) before serving."""
    names = registry.names() if "all" in task_names else list(task_names)
    for name in names:
        key = runtime.preload(name)
        log.info("Preloaded %s for %s", key, name)


def launch(settings: Settings, **kwargs) -> gr.Blocks:
    """Build the runtime and the app, preload what was asked, and serve."""
    import mmdemo.tasks  # noqa: F401  (registers the built-in tasks)

    runtime = Runtime(settings)
    if settings.preload:
        preload(runtime, settings.preload)
    demo = build_demo(runtime)
    demo.launch(server_name=settings.host, server_port=settings.port, theme=gr.themes.Soft(), css=CSS, **kwargs)
    return demo
