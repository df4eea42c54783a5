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
from typing import Any

from mmdemo import registry
from mmdemo.errors import InputError, VisitorError
from mmdemo.runtime import Runtime
from mmdemo.tasks.base import Comparable

log = logging.getLogger(__name__)

MIN_MODELS, MAX_MODELS = 2, 4
Progress = Callable[[str], None]


def short_name(model_id: str) -> str:
    """'Salesforce/blip-vqa-base' -> 'blip-vqa-base': how the summary names a model."""
    return model_id.rsplit("/", 1)[-1]


def checked_models(task_name: str, models: Any, *, allow_custom: bool) -> list[str]:
    """The model ids of a compare request, or an InputError: 2 to 4, distinct, each one the task knows."""
    task = registry.get(task_name)
    if isinstance(models, str):
        models = re.split(r"[,\n]", models)
    if not isinstance(models, Sequence):
        raise InputError("Models must be a list of 2 to 4 model ids")
    ids = [str(model).strip() for model in models if str(model).strip()]
    if len(ids) < MIN_MODELS:
        raise InputError(f"Pick at least {MIN_MODELS} models to compare (got {len(ids)})")
    if len(ids) > MAX_MODELS:
        raise InputError(f"Pick at most {MAX_MODELS} models to compare (got {len(ids)}): one column each")
    repeated = sorted({model for model in ids if ids.count(model) > 1})
    if repeated:
        raise InputError(f"{', '.join(repeated)} is picked twice: pick different models to compare")
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
    task = registry.get(task_name)
    ids = checked_models(task_name, models, allow_custom=runtime.settings.allow_custom_models)
    task.validate({**raw, task.compare_input: ids[0]}, runtime.settings)  # the input's own problems, before any load
    say = progress or (lambda message: None)
    results: list[dict[str, Any]] = []
    for number, model in enumerate(ids, 1):
        of = f"({number} of {len(ids)})"
        say(f"Running {short_name(model)} {of}…")
        started = time.perf_counter()
        try:
            result = runtime.run(task_name, {**raw, task.compare_input: model},
                                 on_load=lambda model_id, of=of: say(f"Loading {short_name(model_id)} {of}…"))
        except InputError:
            raise
        except VisitorError as e:
            results.append({"model": model, "error": str(e), "ms": _ms(started)})
            continue
        except Exception as e:  # one model's crash is its column's error, not the whole compare's
            log.exception("compare: %s on %s failed", task_name, model)
            results.append({"model": model, "error": f"{short_name(model)} failed unexpectedly ({type(e).__name__});"
                                                     " the error was logged", "ms": _ms(started)})
            continue
        results.append({"model": model, "result": result, "ms": _ms(started)})
    return {"task": task_name, "results": results, "agreement": agreement(task_name, results)}


def _ms(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 1)


def agreement(task_name: str, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the models' answers agree, as plain JSON.

    Returns:
        summary: one line ("3 of 3 agree: 'two cats'", "blip-vqa-base and vilt-b32-finetuned-vqa disagree").
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
        out["summary"] = "No model answered: see each column's error"
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
    out["summary"] = _summary(ordered, shown, len(views), out["top3_same"], failed)
    return out


def _comparable_text(text: str) -> str:
    """Case, punctuation and spacing do not make two answers different."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


def same_answer(a: str, b: str) -> bool:
    """Whether two answers are the same for compare mode (case- and punctuation-blind)."""
    return _comparable_text(a) == _comparable_text(b)


def _summary(ordered: list[tuple[str, list[str]]], shown: Mapping[str, str], answered: int,
             top3_same: bool | None, failed: Sequence[str]) -> str:
    def names(models: Sequence[str]) -> str:
        short = [short_name(model) for model in models]
        return short[0] if len(short) == 1 else ", ".join(short[:-1]) + " and " + short[-1]

    (key, models), rest = ordered[0], ordered[1:]
    if answered == 1:
        line = f"Only {names(models)} answered: '{_clip(shown[key])}'"
    elif not rest:
        line = f"{answered} of {answered} agree: '{_clip(shown[key])}'"
        if top3_same is False:
            line += ", but their top 3 differ"
    elif len(models) > 1:
        line = f"{len(models)} of {answered} agree: '{_clip(shown[key])}'; " + "; ".join(
            f"{names(other)} says '{_clip(shown[k])}'" for k, other in rest)
    else:
        line = f"{names([m for _, group in ordered for m in group])} disagree"
    if failed:
        line += f" ({names(failed)} failed)"
    return line


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


__all__ = ["MAX_MODELS", "MIN_MODELS", "Comparable", "agreement", "checked_models", "compare", "same_answer",
           "short_name", "word_diff"]
