"""Flags as a test set: a ZIP of `manifest.csv` plus the flagged media, in the format `mmdemo.evaluate` reads.

One task per export. Each flag is one manifest row; its media file sits at the ZIP's root under its content hash,
so a file flagged twice is one member. The reference columns (answers, reference, label) hold the flag's
"correct answer" when the tester gave one; on a 👍 without one, what the model said (the chosen best model's, in
compare mode) is taken as right; on a 👎 without one they stay empty, and the item runs unscored.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmdemo import registry
from mmdemo.errors import InputError
from mmdemo.flags.store import FlagStore

# Per task: the manifest's columns, as docs/evaluate.md lists them. Multi-valued cells are `|`-separated.
COLUMNS = {
    "vqa": ("file", "question", "answers"),
    "captioning": ("file", "reference"),
    "zero_shot": ("file", "labels", "label"),
    "speech": ("file", "reference", "language"),
    "sentiment": ("text", "image", "audio", "label"),
}
MEDIA_COLUMN = {"vqa": "image", "captioning": "image", "zero_shot": "image", "speech": "audio"}  # -> "file"


def export(store: FlagStore, flags: Sequence[Mapping[str, Any]], target: Path) -> Path:
    """Write the flags as `target` (a .zip); raises InputError for an empty or mixed selection."""
    if not flags:
        raise InputError("error.flags.none_to_export")
    tasks = sorted({str(flag.get("task")) for flag in flags})
    if len(tasks) > 1:
        raise InputError("error.flags.mixed_tasks", tasks=", ".join(tasks))
    task = tasks[0]
    if task not in COLUMNS:
        raise InputError("error.flags.not_exportable", task=task)
    columns = COLUMNS[task]
    rows, members = [], {}
    for flag in flags:
        row = {column: "" for column in columns}
        for name, reference in flag.get("media", {}).items():
            path = store.media_path(reference)
            members[path.name] = path
            column = "file" if MEDIA_COLUMN.get(task) == name else name
            if column in row:
                row[column] = path.name
        inputs = flag.get("inputs", {})
        expected = _expected(task, flag)
        if task == "vqa":
            row.update(question=inputs.get("question", ""), answers=expected)
        elif task == "captioning":
            row["reference"] = expected
        elif task == "zero_shot":
            labels = [label.strip() for label in str(inputs.get("labels", "")).split(",") if label.strip()]
            row.update(labels="|".join(labels), label=expected)
        elif task == "speech":
            row.update(reference=expected, language=_language(flag))
        else:
            row.update(text=inputs.get("text") or "", label=expected)
        rows.append(row)
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.csv", manifest.getvalue())
        for name, path in sorted(members.items()):
            archive.write(path, name)
    partial.replace(target)
    return target


def _expected(task: str, flag: Mapping[str, Any]) -> str:
    """The flag's correct answer: the tester's correction, else on 👍 the (best) model's answer, else empty."""
    if flag.get("correction"):
        return str(flag["correction"])
    if flag.get("rating") != "up":
        return ""
    results = [r for r in flag.get("results", []) if r.get("result")]
    chosen = next((r for r in results if r.get("model") == flag.get("best")), results[0] if results else None)
    if chosen is None:
        return ""
    view = registry.get(task).compare_view(chosen["result"])
    return view.text if view else ""


def _language(flag: Mapping[str, Any]) -> str:
    language = str(flag.get("inputs", {}).get("language") or "auto")
    if language != "auto":
        return language
    detected = [r["result"].get("language") for r in flag.get("results", []) if r.get("result")]
    return next((code for code in detected if code), "")
