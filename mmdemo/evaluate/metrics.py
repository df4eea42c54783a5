"""Metrics per item, per model and between models, each from the library made for it.

- Speech: WER and CER with jiwer on text normalised by Whisper's normaliser (`mmdemo.testing.wer`, the acceptance
  tests' own), with each item's alignment.
- VQA: the VQA-v2 accuracy rule (`vqa_answers`, ported from the official evaluation).
- Zero-shot and sentiment: accuracy, macro-F1 and confusion matrices with scikit-learn.
- Captioning: CLIPScore (`clip_score`, on the runtime's CLIP) and, with references, BLEU-4 with sacrebleu (the
  reference implementation of BLEU's standard tokenisation and signature, maintained, no model to download).
- Between models: scipy's paired bootstrap of the primary metric's difference.

A row is a result dict (see `engine`); `score_row` adds its item's numbers to it, `summarize` reads them back.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # the same test set gives the same interval, in the tab and the CLI


@dataclass(frozen=True)
class Primary:
    """The metric a task's models are ranked, sorted and compared by."""

    name: str
    higher_is_better: bool


PRIMARY = {
    "speech": Primary("wer", higher_is_better=False),
    "vqa": Primary("vqa_accuracy", higher_is_better=True),
    "zero_shot": Primary("top1", higher_is_better=True),
    "sentiment": Primary("accuracy", higher_is_better=True),
    "captioning": Primary("clip_score", higher_is_better=True),
}


# ---------------------------------------------------------------- per item


def speech_item(reference: str, hypothesis: str, language: str) -> dict[str, Any]:
    """WER, CER, the edit counts and the word alignment of one transcript (normalised text)."""
    import jiwer

    from mmdemo.testing.wer import normalize, word_errors

    errors = word_errors([reference], [hypothesis], language)
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    chars = len(ref)  # characters, spaces included, as jiwer.cer counts them
    if ref:
        out = jiwer.process_characters(ref, hyp)
        char_edits = out.substitutions + out.deletions + out.insertions
    else:
        char_edits = len(hyp)
    return {
        "wer": errors.wer,
        "cer": char_edits / chars if chars else float(char_edits > 0),
        "substitutions": errors.substitutions,
        "deletions": errors.deletions,
        "insertions": errors.insertions,
        "words": errors.words,
        "char_edits": char_edits,
        "chars": chars,
        "alignment": word_alignment(ref, hyp),
        "correct": errors.wer == 0,
    }


def word_alignment(reference: str, hypothesis: str) -> list[list[str]]:
    """jiwer's alignment as [operation, reference words, hypothesis words] runs ("equal", "substitute", "delete",
    "insert") over normalised text."""
    import jiwer

    if not reference:
        return [["insert", "", hypothesis]] if hypothesis else []
    out = jiwer.process_words(reference, hypothesis)
    ref_words, hyp_words = out.references[0], out.hypotheses[0]
    return [[chunk.type, " ".join(ref_words[chunk.ref_start_idx:chunk.ref_end_idx]),
             " ".join(hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx])] for chunk in out.alignments[0]]


def alignment_text(alignment: Sequence[Sequence[str]]) -> str:
    """An alignment in one line: substitutions as [ref→hyp], deletions as [-ref], insertions as [+hyp]."""
    marks = {"equal": "{1}", "substitute": "[{1}→{2}]", "delete": "[-{1}]", "insert": "[+{2}]"}
    return " ".join(marks[op].format(op, ref, hyp) for op, ref, hyp in alignment)


def score_row(task: str, row: dict[str, Any], cells: Mapping[str, Any]) -> dict[str, Any]:
    """The item's metrics for one model's answer (empty where the row failed or has no reference)."""
    if row.get("error"):
        return {}
    prediction = row["prediction"]
    if task == "speech":
        reference = cells.get("reference")
        if not reference:
            return {}
        return speech_item(reference, prediction, row["language"])
    if task == "vqa":
        references = cells.get("answers") or ((cells["answer"],) if cells.get("answer") else ())
        if not references:
            return {}
        from mmdemo.evaluate.vqa_answers import vqa_accuracy

        accuracy = vqa_accuracy(prediction, references)
        return {"vqa_accuracy": accuracy, "correct": accuracy > 0,
                **({"exact_match": accuracy} if len(references) == 1 else {})}
    if task == "zero_shot":
        expected = row.get("expected")
        if not expected:
            return {}
        ranked = [label.casefold() for label in row["ranking"]]
        top1 = float(ranked[:1] == [expected.casefold()])
        return {"top1": top1, "top5": float(expected.casefold() in ranked[:5]), "correct": bool(top1)}
    if task == "sentiment":
        expected = row.get("expected")
        if not expected:
            return {}
        correct = float(prediction == expected)
        return {"accuracy": correct, "correct": bool(correct)}
    if task == "captioning":
        references = cells.get("reference") or ()
        if not references:
            return {}
        import sacrebleu

        return {"bleu": sacrebleu.sentence_bleu(prediction, list(references)).score}
    raise ValueError(f"Unknown task {task!r}")


def primary_parts(task: str, row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The row's share of its model's primary metric as (numerator, denominator): corpus WER is total edits over
    total reference words, the others a mean. None: the row does not count (failed, or no reference)."""
    name = PRIMARY[task].name
    if task == "speech":
        if "wer" not in row or row["words"] == 0:
            return None
        return float(row["substitutions"] + row["deletions"] + row["insertions"]), float(row["words"])
    if row.get(name) is None:
        return None
    return float(row[name]), 1.0


# ---------------------------------------------------------------- per model


def summarize(task: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One model's corpus metrics over its rows."""
    done = [row for row in rows if not row.get("error")]
    summary: dict[str, Any] = {"items": len(rows), "errors": len(rows) - len(done)}
    if task == "speech":
        scored = [row for row in done if "wer" in row]
        if scored:
            edits = sum(row["substitutions"] + row["deletions"] + row["insertions"] for row in scored)
            words = sum(row["words"] for row in scored)
            chars = sum(row["chars"] for row in scored)
            summary.update(
                wer=edits / words if words else float(edits > 0),
                cer=sum(row["char_edits"] for row in scored) / chars if chars else 0.0,
                substitutions=sum(row["substitutions"] for row in scored),
                deletions=sum(row["deletions"] for row in scored),
                insertions=sum(row["insertions"] for row in scored),
                words=words, scored=len(scored))
    elif task == "vqa":
        scored = [row for row in done if "vqa_accuracy" in row]
        if scored:
            summary.update(vqa_accuracy=_mean(row["vqa_accuracy"] for row in scored), scored=len(scored))
            single = [row["exact_match"] for row in scored if "exact_match" in row]
            if single:
                summary["exact_match"] = _mean(single)
    elif task in ("zero_shot", "sentiment"):
        scored = [row for row in done if row.get("expected")]
        if scored:
            summary.update(classification(task, scored), scored=len(scored))
    elif task == "captioning":
        scores = [row["clip_score"] for row in done if row.get("clip_score") is not None]
        if scores:
            summary["clip_score"] = _mean(scores)
        with_refs = [row for row in done if row.get("references")]
        if with_refs:
            summary["bleu"] = corpus_bleu([row["prediction"] for row in with_refs],
                                          [row["references"] for row in with_refs])
        summary["scored"] = len(scores)
    return summary


def classification(task: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy (top-1, and top-5 for zero-shot), macro-F1 and the confusion matrix, with scikit-learn."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    truth = [row["expected"] for row in rows]
    predicted = [row["prediction"] for row in rows]
    labels = sorted(set(truth) | set(predicted))
    with warnings.catch_warnings():  # one class only (a tiny set) is fine: the matrix is 1×1
        warnings.simplefilter("ignore", UserWarning)
        matrix = confusion_matrix(truth, predicted, labels=labels)
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)),
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }
    if task == "zero_shot":
        result["top1"] = result.pop("accuracy")
        result["top5"] = _mean(row["top5"] for row in rows)
    return result


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu's corpus BLEU-4 (13a tokenisation) with a varying number of references per item."""
    import sacrebleu

    most = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(most)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)


def _mean(values: Any) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


# ---------------------------------------------------------------- between models


def paired_bootstrap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], *,
                     resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = BOOTSTRAP_CONFIDENCE,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """The difference b - a of a ratio-of-sums metric on the same items, with scipy's paired percentile bootstrap
    interval (items resampled together for both models).

    Args:
        a, b: per item (numerator, denominator), aligned: item i of `a` is item i of `b`.
    Returns:
        {"difference", "low", "high"}.
    """
    from scipy.stats import bootstrap

    if len(a) != len(b) or not a:
        raise ValueError(f"The bootstrap needs the same, non-empty items for both models ({len(a)} and {len(b)})")
    na, da = (np.array(column, dtype=float) for column in zip(*a, strict=True))
    nb, db = (np.array(column, dtype=float) for column in zip(*b, strict=True))

    def difference(na: np.ndarray, da: np.ndarray, nb: np.ndarray, db: np.ndarray, axis: int = -1) -> np.ndarray:
        return nb.sum(axis=axis) / db.sum(axis=axis) - na.sum(axis=axis) / da.sum(axis=axis)

    observed = float(difference(na, da, nb, db))
    if len(a) == 1:
        return {"difference": observed, "low": observed, "high": observed}
    result = bootstrap((na, da, nb, db), difference, paired=True, vectorized=True, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"difference": observed, "low": float(low), "high": float(high)}


def compare_models(task: str, models: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Items where the models answer differently, items every model gets wrong, and each model's primary-metric
    difference from the first model with its 95 % paired bootstrap interval."""
    by_item: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_item.setdefault(row["item"], {})[row["model"]] = row
    complete = {item: got for item, got in by_item.items() if len(got) == len(models)}
    disagree = [item for item, got in complete.items()
                if len({_answer_key(row) for row in got.values()}) > 1]
    all_wrong = [item for item, got in complete.items()
                 if all(row.get("correct") is False or row.get("error") for row in got.values())
                 and any("correct" in row for row in got.values())]
    differences = []
    primary = PRIMARY[task]
    for other in models[1:]:
        pairs = [(primary_parts(task, got[models[0]]), primary_parts(task, got[other])) for got in complete.values()]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        entry: dict[str, Any] = {"baseline": models[0], "model": other, "metric": primary.name,
                                 "higher_is_better": primary.higher_is_better, "items": len(pairs)}
        if pairs:
            entry.update(paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs]))
        differences.append(entry)
    return {"disagreements": sorted(disagree), "all_wrong": sorted(all_wrong), "differences": differences}


def _answer_key(row: Mapping[str, Any]) -> str:
    if row.get("error"):
        return "\0error"
    return " ".join(str(row.get("prediction", "")).casefold().split())


def sort_worst_first(task: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed rows first, then by the item's primary metric, worst first; unscored rows last; stable otherwise."""
    primary = PRIMARY[task]

    def key(row: Mapping[str, Any]) -> tuple[int, float]:
        if row.get("error"):
            return (0, 0.0)
        value = row.get(primary.name)
        if value is None:
            return (2, 0.0)
        return (1, -value if not primary.higher_is_better else value)

    return sorted(rows, key=key)
