"""Compare mode: one input through 2 to 4 models of a task, and where their answers differ.

The models run one after another through `Runtime.run`, each an ordinary request (same validation, cache, batching
and budget as the single-model endpoint, so a column equals that endpoint's result). One at a time, a compare never
needs more memory than its largest model: when the models do not fit the cache together, the next one evicts the
last. A model that fails (missing offline, refused, busy) gets its one-line error in its column; the others still
run. A problem with the input itself (an unreadable image) fails the whole compare, as it would fail every column.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmdemo import registry
from mmdemo.errors import InputError, VisitorError
from mmdemo.i18n import Message, text
from mmdemo.runtime import Runtime
from mmdemo.tasks.base import Comparable

log = logging.getLogger(__name__)

MIN_MODELS, MAX_MODELS = 2, 4
Progress = Callable[[str], None]  # told a line (in the request's language) as each model loads or runs
Step = Callable[[str, float], None]  # the same line and the fraction of the models done


@dataclass(frozen=True)
class Comparison:
    """A compare's outcome: what /compare returns (plain JSON, its errors English), and each failed model's error as
    a Message, so that the page shows that column's error in the visitor's language."""

    result: dict[str, Any]
    errors: dict[str, Message]


def short_name(model_id: str) -> str:
    """'Salesforce/blip-vqa-base' -> 'blip-vqa-base': how the summary names a model."""
    return model_id.rsplit("/", 1)[-1]


def checked_models(task_name: str, models: Any, *, allow_custom: bool) -> list[str]:
    """The model ids of a compare request, or an InputError: 2 to 4, distinct, each one the task knows."""
    task = registry.get(task_name)
    if isinstance(models, str):
        models = re.split(r"[,\n]", models)
    if not isinstance(models, Sequence):
        raise InputError("error.compare.not_a_list", min=MIN_MODELS, max=MAX_MODELS)
    ids = [str(model).strip() for model in models if str(model).strip()]
    if len(ids) < MIN_MODELS:
        raise InputError("error.compare.too_few", min=MIN_MODELS, count=len(ids))
    if len(ids) > MAX_MODELS:
        raise InputError("error.compare.too_many", max=MAX_MODELS, count=len(ids))
    repeated = sorted({model for model in ids if ids.count(model) > 1})
    if repeated:
        raise InputError("error.compare.repeated", models=", ".join(repeated))
    for model in ids:
        if model not in task.extra_model_ids:
            task.model_spec(model, allow_custom=allow_custom)
    return ids


def compare(runtime: Runtime, task_name: str, raw: Mapping[str, Any], models: Any,
            progress: Progress | None = None) -> dict[str, Any]:
    """Run `raw` through each of `models` (varying the task's `compare_input`); results and agreement.

    Returns:
        {"task", "results": [{"model", "result" | "error", "ms"}], "agreement": see `agreement`}
    Raises:
        InputError: a bad model list, or an input that no model can take (message from the task's validate).
    """
    say = progress or (lambda line: None)
    return comparison(runtime, task_name, raw, models, lambda line, done: say(line)).result


def comparison(runtime: Runtime, task_name: str, raw: Mapping[str, Any], models: Any,
               step: Step | None = None) -> Comparison:
    """`compare`, with the fraction done in the progress and each failed model's error as a Message."""
    task = registry.get(task_name)
    ids = checked_models(task_name, models, allow_custom=runtime.settings.allow_custom_models)
    task.validate({**raw, task.compare_input: ids[0]}, runtime.settings)  # the input's own problems, before any load
    say = step or (lambda line, done: None)
    results: list[dict[str, Any]] = []
    errors: dict[str, Message] = {}
    for number, model in enumerate(ids, 1):
        of = {"number": number, "count": len(ids)}
        done = (number - 1) / len(ids)
        say(text("compare.progress.running", model=short_name(model), **of), done)
        started = time.perf_counter()
        try:
            result = runtime.run(task_name, {**raw, task.compare_input: model},
                                 on_load=lambda model_id, of=of, done=done: say(
                                     text("compare.progress.loading", model=short_name(model_id), **of), done))
        except InputError:
            raise
        except VisitorError as e:
            errors[model] = e.message
            results.append({"model": model, "error": str(e), "ms": _ms(started)})
        except Exception as e:  # one model's crash is its column's error, not the whole compare's
            log.exception("compare: %s on %s failed", task_name, model)
            errors[model] = Message("error.compare.model_failed", {"model": short_name(model),
                                                                   "error": type(e).__name__})
            results.append({"model": model, "error": str(errors[model]), "ms": _ms(started)})
        else:
            results.append({"model": model, "result": result, "ms": _ms(started)})
    result = {"task": task_name, "results": results, "agreement": agreement(task_name, results)}
    return Comparison(result, errors)


def _ms(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 1)


def agreement(task_name: str, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the models' answers agree, as plain JSON.

    Returns:
        summary: one line in English ("3 of 3 agree: 'two cats'", "blip-vqa-base and vilt-b32-finetuned-vqa
            disagree"); `summary` gives it as a Message, to show in another language.
        agree: whether every model that answered gave the same answer (compared case- and punctuation-blind).
        groups: [{"answer", "models"}], the largest first.
        top3_same: for ranking tasks, whether the top 3 came in the same order for every model, else None.
        diff: for free text (captions, transcripts), per model the words against the first column's:
            [[word, "+" | "-" | null], ...] ("+" only in this column, "-" only in the first).
    """
    task = registry.get(task_name)
    views = {r["model"]: task.compare_view(r["result"]) for r in results if r.get("result") is not None}
    failed = [r["model"] for r in results if r.get("result") is None]
    out: dict[str, Any] = {"summary": "", "agree": False, "groups": [], "top3_same": None, "diff": {}}
    if not views:
        out["summary"] = str(summary([], None, failed))
        return out
    groups: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for model, view in views.items():
        key = _comparable_text(view.text)
        groups.setdefault(key, []).append(model)
        shown.setdefault(key, view.text)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    out["groups"] = [{"answer": shown[key], "models": models} for key, models in ordered]
    out["agree"] = len(groups) == 1 and len(views) > 1
    rankings = [view.top[:3] for view in views.values()]
    if all(rankings):
        out["top3_same"] = all(ranking == rankings[0] for ranking in rankings)
    if any(view.words for view in views.values()):
        first = next(iter(views.values())).text
        out["diff"] = {model: word_diff(first, view.text) for model, view in views.items()}
    out["summary"] = str(summary(out["groups"], out["top3_same"], failed))
    return out


def _comparable_text(text: str) -> str:
    """Case, punctuation and spacing do not make two answers different."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


def same_answer(a: str, b: str) -> bool:
    """Whether two answers are the same for compare mode (case- and punctuation-blind)."""
    return _comparable_text(a) == _comparable_text(b)


def summary(groups: Sequence[Mapping[str, Any]], top3_same: bool | None, failed: Sequence[str]) -> Message:
    """The agreement's one line: `str()` is the English of /compare's summary, `render(locale)` the same in another
    language.

    Args:
        groups: agreement's groups ({"answer", "models"}, the largest first).
        top3_same: agreement's top3_same.
        failed: the models that gave no answer, in column order.
    """
    if not groups:
        return Message("compare.summary.none")
    answered = sum(len(group["models"]) for group in groups)
    first, rest = groups[0], groups[1:]
    answer = _clip(first["answer"])
    if answered == 1:
        line = Message("compare.summary.only", {"models": _names(first["models"]), "answer": answer})
    elif not rest:
        key = "compare.summary.all_top3_differ" if top3_same is False else "compare.summary.all"
        line = Message(key, {"count": answered, "answer": answer})
    elif len(first["models"]) > 1:
        others = [Message("compare.summary.says", {"models": _names(group["models"]), "answer": _clip(group["answer"])})
                  for group in rest]
        line = Message("compare.summary.most", {"count": len(first["models"]), "answered": answered,
                                                "answer": answer, "others": _chain(others, "compare.list.semicolon")})
    else:
        line = Message("compare.summary.disagree", {"models": _names([m for group in groups for m in group["models"]])})
    if failed:
        line = Message("compare.summary.failed", {"summary": line, "models": _names(failed)})
    return line


def result_summary(result: Mapping[str, Any]) -> Message:
    """The summary of a /compare result, from its structured fields (equal to its English "summary")."""
    found = result["agreement"]
    failed = [entry["model"] for entry in result["results"] if entry.get("result") is None]
    return summary(found["groups"], found["top3_same"], failed)


def _names(models: Sequence[str]) -> str | Message:
    """'blip-vqa-base, vilt-b32-finetuned-vqa and git-base-vqav2', in the language it is shown in."""
    short = [short_name(model) for model in models]
    if len(short) == 1:
        return short[0]
    return Message("compare.list.and", {"first": _chain(short[:-1], "compare.list.comma"), "last": short[-1]})


def _chain(items: Sequence[str | Message], key: str) -> str | Message:
    """Items joined pairwise by `key`'s text ("{first}, {next}"), so each language picks its separator."""
    joined = items[0]
    for item in items[1:]:
        joined = Message(key, {"first": joined, "next": item})
    return joined


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def word_diff(reference: str, text: str) -> list[list[str | None]]:
    """`text`'s words against `reference`'s, as [[word, op]]: op "+" for a word only in `text`, "-" for one only in
    `reference` (kept in place, so the column reads as an edit of the first), None for a shared word. Words match
    case- and punctuation-blind, as difflib's longest matching blocks find them."""
    ours, theirs = text.split(), reference.split()
    matcher = difflib.SequenceMatcher(a=[_comparable_text(w) for w in theirs], b=[_comparable_text(w) for w in ours],
                                      autojunk=False)
    out: list[list[str | None]] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            out += [[word, None] for word in ours[b0:b1]]
            continue
        out += [[word, "-"] for word in theirs[a0:a1]]
        out += [[word, "+"] for word in ours[b0:b1]]
    return out


__all__ = ["MAX_MODELS", "MIN_MODELS", "Comparable", "Comparison", "agreement", "checked_models", "compare",
           "comparison", "result_summary", "same_answer", "short_name", "summary", "word_diff"]
