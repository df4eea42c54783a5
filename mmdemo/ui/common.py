"""What every tab shares: the model picker, running a task with errors mapped to gr.Error, provenance."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.errors import InputError
from mmdemo.flags import open_store
from mmdemo.i18n import has as has_text
from mmdemo.media import load_image
from mmdemo.runtime import Runtime
from mmdemo.tasks.base import Task
from mmdemo.ui import compare_panel, flag_row
from mmdemo.ui.compare_panel import ComparePanel
from mmdemo.ui.i18n import localized, message, t

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
IMAGE_HEIGHT = 200  # px: an image input, its examples and the Run button fit a 1280×800 laptop screen


@dataclass
class TabParts:
    """A built tab's components that the rest of the page reads or fills (chaining between tabs, compare, flags)."""

    task_name: str
    inputs: dict[str, gr.components.Component]  # by the task's input names, as `wire` got them
    result: gr.JSON  # the API's result of the last run
    outputs: dict[str, gr.components.Component] = field(default_factory=dict)  # named views, e.g. "transcript"
    compare: ComparePanel | None = None  # the compare section, for tasks with a compare view


def asset(name: str) -> str:
    return str(ASSETS / name)


def examples(task_name: str, rows: Sequence[Sequence[Any]], inputs: Sequence[gr.components.Component], *,
             visible_columns: Sequence[int] | None = None) -> gr.Examples:
    """Compact examples (small thumbnails: the app's CSS styles `#<task>-examples`), placed under the inputs.

    Args:
        visible_columns: the inputs shown in the examples' table (default all); hidden ones are still filled in.
    """
    return gr.Examples([list(row) for row in rows], inputs=list(inputs),
                       label=t("ui.examples"), elem_id=f"{task_name}-examples",
                       visible_columns=list(visible_columns) if visible_columns is not None else None)


def result_json() -> gr.JSON:
    """The plain result the API returns, folded away under the rendered views."""
    with gr.Accordion(t("ui.result_json"), open=False):
        return gr.JSON(show_label=False)


def model_dropdown(runtime: Runtime, task_name: str, *, label: Any = None,
                   extra: Sequence[tuple[str, str, bool]] = ()) -> gr.Dropdown:
    """The task's curated models; offline, each says whether it is on this machine and the default is one that is.

    Args:
        label: the dropdown's label (a `t(...)` text; default "Model").
        extra: more (id, note, available offline) choices after the curated ones, e.g. a lexicon backend.
    """
    choices = [(c.spec.id, c.spec.note, c.available_offline) for c in runtime.model_choices(task_name)]
    choices += list(extra)
    offline = not runtime.hub_reachable()
    value = choices[0][0]
    if offline:
        value = next((model_id for model_id, _, local in choices if local), value)

    def title(model_id: str, note: str, local: bool) -> Any:
        missing = offline and not local
        if not note:
            return t("ui.model.missing", model=model_id) if missing else model_id
        # A curated model's note in the visitor's language (the catalogue's English note is the spec's: a test).
        shown = message(f"model.note.{model_id}") if has_text(f"model.note.{model_id}") \
            else note
        if missing:
            return t("ui.model.choice.missing", model=model_id, note=shown)
        return t("ui.model.choice", mark="✓ " if offline else "", model=model_id, note=shown)

    return gr.Dropdown(
        choices=[(title(*choice), choice[0]) for choice in choices],
        value=value,
        label=label if label is not None else t("ui.model"),
        allow_custom_value=runtime.settings.allow_custom_models,
    )


def image_input(**kwargs: Any) -> gr.Image:
    """A gr.Image whose unreadable uploads fail with the media module's one-line reason.

    gr.Image opens every upload with Pillow before the handler runs; on a file that is not an image the
    visitor would otherwise get Gradio's generic "the app raised an exception". The wrapper passes such a file on
    to the handler, whose validation (`media.load_image`) refuses it. The wrapper is set on the instance:
    subclassing a Gradio component makes Gradio write a .pyi stub next to this module.
    """
    # image_mode=None: the upload reaches media.load_image as sent. Gradio's default converts (and re-saves) every
    # non-RGB image first: transparency onto black, 16-bit clipped, and a tiny 1-bit bomb decoded in full.
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    gradio_preprocess = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return gradio_preprocess(payload)
        except Exception:
            path = getattr(payload, "path", None)
            if not path:
                raise
            try:
                load_image(path)
            except InputError:
                # The handler's own validation refuses the file with the same reason, in the visitor's language
                # (preprocessing runs before the handler, outside the request's language).
                return path
            raise

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def task_title(task_name: str) -> Any:
    """The task's title for the visitor (its catalogue text; a task without one, e.g. a plug-in's, its own title)."""
    key = f"task.{task_name}.title"
    return t(key) if has_text(key) else registry.get(task_name).title


def task_description(task_name: str) -> Any:
    key = f"task.{task_name}.description"
    return t(key) if has_text(key) else registry.get(task_name).description


def task_endpoint(runtime: Runtime, task_name: str, names: Sequence[str]) -> Callable[..., dict[str, Any]]:
    """A Gradio handler taking the tab's inputs positionally, in the order of `names`: one request through the
    runtime, its errors one line in the visitor's language (unexpected ones logged)."""

    def handler(*values: Any, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:
        def on_load(model_id: str) -> None:
            progress(0, desc=t("ui.loading_model", model=model_id))

        return runtime.run(task_name, dict(zip(names, values)), on_load=on_load)

    handler.__name__ = task_name
    # The API's parameters carry the input names (image, question, ...), so clients can also call by keyword.
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
        + [inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress())]
    )
    return localized(handler, what=registry.get(task_name).title_message)


def provenance_line(result: dict[str, Any] | None) -> str:
    """'Salesforce/blip-vqa-base · cpu · float32 · 812 ms' under each result."""
    if not result:
        return ""
    info = result["provenance"]
    models = ", ".join(f"`{model}`" for model in dict.fromkeys(info["models"].values()))
    return f"<small>{models} · {info['device']} · {info['dtype']} · {info['ms']:.0f} ms</small>"


def concurrency(runtime: Runtime, task_name: str) -> dict[str, Any]:
    """Tasks that batch admit a whole batch at once (so requests can meet in the batcher); the rest share
    the app's concurrency limit, since on a small machine more parallel requests only make each slower."""
    task = registry.get(task_name)
    settings = runtime.settings
    if type(task).predict_batch is not Task.predict_batch and runtime.max_batch > 1:
        return {"concurrency_id": "batched", "concurrency_limit": max(runtime.max_batch, settings.concurrency)}
    return {"concurrency_id": "models", "concurrency_limit": settings.concurrency}


def wire(
    runtime: Runtime,
    task_name: str,
    button: gr.Button,
    inputs: dict[str, gr.components.Component],
    result: gr.JSON,
    render: Callable[[dict[str, Any] | None], Any],
    views: Sequence[gr.components.Component],
    submit: Sequence[gr.components.Component] = (),
) -> TabParts:
    """Connect a tab: Run (API `task_name`) returns the JSON result; a private step renders it into `views`.

    The API stays the plain result dict, while the page shows progress and results on the views; a failed run
    clears them. `render(None)` must give the empty views. Returns the tab's parts (the builder returns them).
    """
    names = list(inputs)
    # Stable page ids, #<task>-<input> and #<task>-run, for the browser tests and the CSS.
    for name, component in inputs.items():
        component.elem_id = component.elem_id or f"{task_name}-{name}"
    button.elem_id = button.elem_id or f"{task_name}-run"
    endpoint = task_endpoint(runtime, task_name, names)
    triggers = [button.click, *(component.submit for component in submit)]
    event = gr.on(
        triggers=triggers,
        fn=endpoint,
        inputs=list(inputs.values()),
        outputs=result,
        api_name=task_name,
        show_progress_on=list(views),
        **concurrency(runtime, task_name),
    )
    # Rendered in the visitor's language: render functions write their notes with `t`.
    event.success(localized(render), inputs=result, outputs=list(views), api_visibility="private", queue=False)
    # A failed run leaves no stale result next to its error message.
    event.failure(localized(lambda: (None, *render(None))), outputs=[result, *views], api_visibility="private",
                  queue=False)
    parts = TabParts(task_name, dict(inputs), result)
    # Under the result: flags (where flagging is on) and, for tasks with a compare view, compare mode.
    store = open_store(runtime.settings)
    if store is not None:
        flag_row.build(store, task_name, inputs, result)
    if _has_compare_view(task_name):
        parts.compare = compare_panel.build(runtime, task_name, dict(inputs), store)
    return parts


def _has_compare_view(task_name: str) -> bool:
    return type(registry.get(task_name)).compare_view is not Task.compare_view
