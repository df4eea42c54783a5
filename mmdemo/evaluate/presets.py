"""The ready-made test sets in assets/eval/: one folder per set with its manifest.csv; a file the manifest names is in
that folder or in assets/ (the tabs' example media, stored once)."""

from __future__ import annotations

import csv
from pathlib import Path

from mmdemo.errors import InputError
from mmdemo.evaluate.manifest import COLUMNS

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EVAL_SETS = ASSETS / "eval"
# set name -> its task; the tab describes each set with the catalogue's `evaluate.preset.about`
PRESETS = {"speech": "speech", "zero_shot": "zero_shot", "sentiment": "sentiment"}


def preset_task(name: str) -> str:
    if name not in PRESETS:
        raise InputError("error.eval.unknown_preset", name=name, choices=", ".join(PRESETS))
    return PRESETS[name]


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
