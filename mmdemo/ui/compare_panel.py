"""Compare mode under a tab: the tab's input through 2 to 4 models, side by side, with their disagreement marked."""

from __future__ import annotations

import html
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.compare import MAX_MODELS, compare, same_answer, short_name
from mmdemo.errors import VisitorError
from mmdemo.flags import FlagStore
from mmdemo.runtime import Runtime
from mmdemo.ui import flag_row

log = logging.getLogger(__name__)

DIFF_COLORS = {"added": "#16a34a", "removed": "#dc2626", "differs": "#d97706"}
DIFF_NAMES = {"+": "added", "-": "removed"}


@dataclass
class Column:
    box: gr.Column
    header: gr.Markdown
    text: gr.HighlightedText
    scores: gr.Label
    details: gr.Markdown


@dataclass
class ComparePanel:
    """What other parts of the page fill: the model picker, the result, and `run` (the compare event's handler)."""

    models: gr.Dropdown
    button: gr.Button
    accordion: gr.Accordion
    rerun: gr.State  # a new value starts the compare (the Review tab re-runs a flag this way)
    result: gr.JSON
    run: Callable[..., Any]
    views: list[gr.components.Component]
    render: Callable[[dict[str, Any] | None], list[Any]]


def model_picker_choices(model_input: gr.components.Component) -> tuple[list[tuple[str, str]], list[str]]:
    """The compare picker's choices: the tab's own model picker's; the default, its first two that can load here."""
    choices = [(str(label), str(value)) for label, value in getattr(model_input, "choices", [])]
    offline_marked = [value for label, value in choices if label.startswith("✓")]
    default = (offline_marked if len(offline_marked) >= 2 else [value for _, value in choices])[:2]
    return choices, default


def build(runtime: Runtime, task_name: str, inputs: dict[str, gr.components.Component],
          store: FlagStore | None = None) -> ComparePanel:
    """The compare section's components (call inside the tab) and its wiring to the tab's `inputs`; with a flag
    store, a flag row (with "best") under the columns."""
    task = registry.get(task_name)
    names = [name for name in inputs if name != task.compare_input]
    choices, default = model_picker_choices(inputs[task.compare_input])
    with gr.Accordion("Compare models side by side", open=False, elem_id=f"{task_name}-compare") as accordion:
        with gr.Row(equal_height=False):
            picker = gr.Dropdown(choices, value=default, multiselect=True, max_choices=MAX_MODELS, scale=4,
                                 label=f"Models to compare (2 to {MAX_MODELS}); the same input runs on each",
                                 elem_id=f"{task_name}-compare-models")
            button = gr.Button("Compare", variant="primary", scale=0, min_width=160, elem_id=f"{task_name}-compare-run")
        summary = gr.Markdown(elem_id=f"{task_name}-compare-summary")
        columns = []
        with gr.Row(equal_height=False):
            for number in range(MAX_MODELS):
                with gr.Column(visible=False, min_width=220, elem_id=f"{task_name}-compare-col{number}") as box:
                    columns.append(Column(
                        box, gr.Markdown(),
                        gr.HighlightedText(show_label=False, combine_adjacent=True, adjacent_separator=" ",
                                           color_map=DIFF_COLORS, show_inline_category=False),
                        gr.Label(num_top_classes=3, show_label=False, visible=False),
                        gr.Markdown(),
                    ))
        with gr.Accordion("Comparison as JSON (what /compare returns)", open=False):
            result = gr.JSON(show_label=False)
        best = flag_row.build(store, task_name, inputs, result, mode="compare") if store else None

    def run(models: list[str] | None, *values: Any, progress: gr.Progress = gr.Progress()) -> dict[str, Any]:
        raw = dict(zip(names, values))
        count = max(len(models or []), 1)
        done = [0]

        def say(message: str) -> None:
            if message.startswith("Running"):
                done[0] += 1
            progress((done[0] - 1) / count, desc=message)

        try:
            return compare(runtime, task_name, raw, models or [], say)
        except VisitorError as e:
            raise gr.Error(str(e), print_exception=False) from e
        except Exception as e:
            log.exception("compare on %s failed", task_name)
            raise gr.Error(f"Compare failed unexpectedly ({type(e).__name__}); the error was logged",
                           print_exception=False) from e

    views: list[gr.components.Component] = [summary]
    for column in columns:
        views += [column.box, column.header, column.text, column.scores, column.details]
    if best is not None:
        views.append(best)

    def render(out: dict[str, Any] | None) -> list[Any]:
        values: list[Any] = [_summary_line(out)]
        results = (out or {}).get("results", [])
        for number in range(MAX_MODELS):
            values += _column(task_name, out, results[number]) if number < len(results) else _hidden()
        if best is not None:
            values.append(gr.Radio([(short_name(r["model"]), r["model"]) for r in results], value=None))
        return values

    rerun = gr.State("")
    gr.on([button.click, rerun.change], run, inputs=[picker, *(inputs[name] for name in names)], outputs=result,
          show_progress_on=[summary], concurrency_id="models", concurrency_limit=runtime.settings.concurrency,
          api_visibility="private",
          ).then(render, inputs=result, outputs=views, api_visibility="private", queue=False)
    return ComparePanel(picker, button, accordion, rerun, result, run, views, render)


def _summary_line(out: dict[str, Any] | None) -> str:
    if not out:
        return ""
    agreement = out["agreement"]
    mark = "✅" if agreement["agree"] else "⚠️"
    legend = (" <small>(marked words: green only in that column, red only in the first column)</small>"
              if agreement.get("diff") else "")
    return f"{mark} **{html.escape(agreement['summary'])}**{legend}"


def _hidden() -> list[Any]:
    return [gr.Column(visible=False), "", None, gr.Label(value=None, visible=False), ""]


def _column(task_name: str, out: dict[str, Any], entry: dict[str, Any]) -> list[Any]:
    model = entry["model"]
    header = f"**{html.escape(short_name(model))}** · {entry['ms']:.0f} ms<br><small>{html.escape(model)}</small>"
    if entry.get("result") is None:
        return [gr.Column(visible=True), header + f"<br>⚠️ {html.escape(entry['error'])}", None,
                gr.Label(value=None, visible=False), ""]
    view = registry.get(task_name).compare_view(entry["result"])
    agreement = out["agreement"]
    if model in agreement.get("diff", {}):
        text = [(word, DIFF_NAMES.get(op)) for word, op in agreement["diff"][model]]
    else:
        first = next(r for r in out["results"] if r.get("result") is not None)
        first_text = registry.get(task_name).compare_view(first["result"]).text
        same = same_answer(view.text, first_text)
        text = [(view.text or "(empty)", None if same else "differs")]
    scores = ({label: score for label, score in view.ranking} if view.ranking else None)
    details = "<br>".join(html.escape(line) for line in view.details)
    return [gr.Column(visible=True), header, text, gr.Label(value=scores, visible=bool(scores)), details]



class Opener:
    """Opens an item in a task tab's compare mode from elsewhere on the page (Review, Evaluate): switches to the tab,
    fills its inputs, picks the models, opens the compare section and starts it (through its `rerun` token).

    `outputs` are the components an event must list; `values(task, raw, models)` gives their new values.
    """

    def __init__(self, parts: Mapping[str, Any], tabs: gr.Tabs) -> None:
        self.tasks = [name for name, part in parts.items() if part.compare is not None]
        self.parts = parts
        self.outputs: list[gr.components.Component] = [tabs]
        for name in self.tasks:
            compare_panel = parts[name].compare
            self.outputs += [*parts[name].inputs.values(), compare_panel.models, compare_panel.accordion,
                             compare_panel.rerun]
        self._count = itertools.count()

    def values(self, task_name: str, raw: Mapping[str, Any], models: Sequence[str]) -> list[Any]:
        if task_name not in self.tasks:
            raise gr.Error(f"{task_name} has no compare mode", print_exception=False)
        values: list[Any] = [gr.Tabs(selected=task_name)]
        for name in self.tasks:
            inputs = self.parts[name].inputs
            if name != task_name:
                values += [gr.skip()] * (len(inputs) + 3)
                continue
            values += [raw.get(key, gr.skip()) for key in inputs]
            values += [list(models), gr.Accordion(open=True), f"open-{next(self._count)}"]
        return values
