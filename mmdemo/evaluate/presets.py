"""The ready-made test sets in assets/eval/: one folder per set with its manifest.csv; a file the manifest names is in
that folder or in assets/ (the tabs' example media, stored once)."""

from __future__ import annotations

import csv
from pathlib import Path

from mmdemo.errors import InputError
from mmdemo.evaluate.manifest import COLUMNS

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EVAL_SETS = ASSETS / "eval"
PRESETS = {  # set name -> its task and a one-line description for the tab
    "speech": ("speech", "3 English clips with their transcripts"),
    "zero_shot": ("zero_shot", "6 labelled photos and drawings, 8 candidate labels"),
    "sentiment": ("sentiment", "12 labelled movie-review sentences"),
}


def preset_task(name: str) -> str:
    if name not in PRESETS:
        raise InputError(f"Unknown ready-made set {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name][0]


def preset_files(name: str) -> list[Path]:
    """The set's manifest and every file it names: what a folder upload of the set would send."""
    task = preset_task(name)
    folder = EVAL_SETS / name
    manifest = folder / "manifest.csv"
    files = [manifest]
    media_columns = set(COLUMNS[task].media)
    with open(manifest, newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            for column in media_columns & set(row):
                if row[column]:
                    local = folder / row[column]
                    files.append(local if local.is_file() else ASSETS / row[column])
    return list(dict.fromkeys(files))
