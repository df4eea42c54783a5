"""Compare mode under a tab: the tab's input through 2 to 4 models, side by side, with their disagreement marked."""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from mmdemo import registry
from mmdemo.compare import MAX_MODELS, comparison, result_summary, same_answer, short_name
from mmdemo.errors import InputError
from mmdemo.flags import FlagStore
from mmdemo.i18n import Message
from mmdemo.runtime import Runtime
from mmdemo.ui import flag_row
from mmdemo.ui.i18n import localized, message, t

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
    run: Callable[..., Any]  # (models, *the tab's other inputs) -> (the /compare result, failed models' errors)
    views: list[gr.components.Component]
    render: Callable[..., list[Any]]  # (result, errors) -> the views' values


def model_picker_choices(runtime: Runtime, task_name: str, model_input: gr.components.Component
                         ) -> tuple[list[tuple[str, str]], list[str]]:
    """The compare picker's choices: the tab's own model picker's (a translated name as its marker's text, which
    the page translates); the default, its first two that can load here."""
    choices = [(str(label), str(value)) for label, value in getattr(model_input, "choices", [])]
    values = [value for _, value in choices]
    if not runtime.hub_reachable():  # offline: the models on this machine first
        here = {c.spec.id for c in runtime.model_choices(task_name) if c.available_offline}
        here |= set(registry.get(task_name).extra_model_ids)
        local = [value for value in values if value in here]
        values = local if len(local) >= 2 else values
    return choices, values[:2]


def build(runtime: Runtime, task_name: str, inputs: dict[str, gr.components.Component],
          store: FlagStore | None = None) -> ComparePanel:
    """The compare section's components (call inside the tab) and its wiring to the tab's `inputs`; with a flag
    store, a flag row (with "best") under the columns."""
    task = registry.get(task_name)
    names = [name for name in inputs if name != task.compare_input]
    choices, default = model_picker_choices(runtime, task_name, inputs[task.compare_input])
    with gr.Accordion(t("compare.title"), open=False, elem_id=f"{task_name}-compare") as accordion:
        with gr.Row(equal_height=False):
            picker = gr.Dropdown(choices, value=default, multiselect=True, max_choices=MAX_MODELS, scale=4,
                                 label=t("compare.models", max=MAX_MODELS), elem_id=f"{task_name}-compare-models")
            button = gr.Button(t("compare.button"), variant="primary", scale=0, min_width=160,
                               elem_id=f"{task_name}-compare-run")
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
        with gr.Accordion(t("compare.result_json"), open=False):
            result = gr.JSON(show_label=False)
        errors = gr.State({})  # model -> its column's error as a Message, shown in the visitor's language
        best = flag_row.build(store, task_name, inputs, result, mode="compare") if store else None

    def run(models: list[str] | None, *values: Any, progress: gr.Progress = gr.Progress()
            ) -> tuple[dict[str, Any], dict[str, Message]]:
        raw = dict(zip(names, values))
        done = comparison(runtime, task_name, raw, models or [], lambda line, fraction: progress(fraction, desc=line))
        return done.result, done.errors

    views: list[gr.components.Component] = [summary]
    for column in columns:
        views += [column.box, column.header, column.text, column.scores, column.details]
    if best is not None:
        views.append(best)

    def render(out: dict[str, Any] | None, failures: Mapping[str, Message] | None = None) -> list[Any]:
        values: list[Any] = [_summary_line(out)]
        results = (out or {}).get("results", [])
        for number in range(MAX_MODELS):
            values += _column(task_name, out, results[number], failures or {}) if number < len(results) else _hidden()
        if best is not None:
            values.append(gr.Radio([(short_name(r["model"]), r["model"]) for r in results], value=None))
        return values

    rerun = gr.State("")
    run = localized(run, what=message("compare.what"))
    render = localized(render)
    gr.on([button.click, rerun.change], run, inputs=[picker, *(inputs[name] for name in names)],
          outputs=[result, errors], show_progress_on=[summary], concurrency_id="models",
          concurrency_limit=runtime.settings.concurrency, api_visibility="private",
          ).then(render, inputs=[result, errors], outputs=views, api_visibility="private", queue=False)
    return ComparePanel(picker, button, accordion, rerun, result, run, views, render)


def _summary_line(out: dict[str, Any] | None) -> str:
    """The agreement in the request's language (rendered from the result's fields; its "summary" is English)."""
    if not out:
        return ""
    agreement = out["agreement"]
    mark = "✅" if agreement["agree"] else "⚠️"
    legend = f" <small>{html.escape(t('compare.legend'))}</small>" if agreement.get("diff") else ""
    return f"{mark} **{html.escape(result_summary(out).render())}**{legend}"


def _hidden() -> list[Any]:
    return [gr.Column(visible=False), "", None, gr.Label(value=None, visible=False), ""]


def _column(task_name: str, out: dict[str, Any], entry: dict[str, Any], failures: Mapping[str, Message]
            ) -> list[Any]:
    model = entry["model"]
    header = f"**{html.escape(short_name(model))}** · {entry['ms']:.0f} ms<br><small>{html.escape(model)}</small>"
    if entry.get("result") is None:
        failure = failures.get(model)  # the error in the visitor's language; the result holds its English
        error = failure.render() if failure is not None else entry["error"]
        return [gr.Column(visible=True), header + f"<br>⚠️ {html.escape(error)}", None,
                gr.Label(value=None, visible=False), ""]
    view = registry.get(task_name).compare_view(entry["result"])
    agreement = out["agreement"]
    if model in agreement.get("diff", {}):
        text = [(word, DIFF_NAMES.get(op)) for word, op in agreement["diff"][model]]
    else:
        first = next(r for r in out["results"] if r.get("result") is not None)
        first_text = registry.get(task_name).compare_view(first["result"]).text
        same = same_answer(view.text, first_text)
        text = [(view.text or t("compare.empty"), None if same else "differs")]
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
            raise InputError("error.compare.no_compare_mode", task=task_name)
        values: list[Any] = [gr.Tabs(selected=task_name)]
        for name in self.tasks:
            inputs = self.parts[name].inputs
            if name != task_name:
                values += [gr.skip()] * (len(inputs) + 3)
                continue
            values += [raw.get(key, gr.skip()) for key in inputs]
            values += [list(models), gr.Accordion(open=True), f"open-{next(self._count)}"]
        return values
