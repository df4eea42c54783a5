"""Test-set manifests: `manifest.csv` or `manifest.jsonl` rows -> `Item`s, or one item per file without a manifest.

The columns each task reads are in `COLUMNS`; a cell holding several values (VQA `answers`, captioning `reference`,
zero-shot `labels`) separates them with `|` (in JSONL, a list works too). The flag export writes this format.
Problems with the manifest as a whole (unknown columns, not UTF-8, too many rows) raise InputError with one line;
a problem with one row (its file is missing) becomes that item's `error`, and the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mmdemo.errors import InputError
from mmdemo.i18n import Message

MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
MAX_MANIFEST_BYTES = 50_000_000  # far above any item limit's rows: a cap on reading, not the row limit
MAX_CELL_CHARS = 10_000  # one cell; the tasks' own limits (question, text) apply afterwards
SEPARATOR = "|"  # between the values of a multi-valued cell

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".ppm"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".aiff", ".aif"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".jar"})


@dataclass(frozen=True)
class Columns:
    """A task's manifest columns: which must be there, which may, which name files and which hold several values."""

    required: frozenset[str]
    optional: frozenset[str]
    media: Mapping[str, str]  # column -> the task's raw input it fills ("image", "audio"); "" for by suffix
    multi: frozenset[str] = frozenset()
    one_of: frozenset[str] = frozenset()  # at least one of these must be there (sentiment's inputs)

    @property
    def allowed(self) -> frozenset[str]:
        return self.required | self.optional


COLUMNS: dict[str, Columns] = {
    "vqa": Columns(frozenset({"file", "question"}), frozenset({"answer", "answers"}), {"file": "image"},
                   multi=frozenset({"answers"})),
    "captioning": Columns(frozenset({"file"}), frozenset({"reference"}), {"file": "image"},
                          multi=frozenset({"reference"})),
    "zero_shot": Columns(frozenset({"file"}), frozenset({"label", "labels"}), {"file": "image"},
                         multi=frozenset({"labels"})),
    "speech": Columns(frozenset({"file"}), frozenset({"reference", "language"}), {"file": "audio"}),
    # `file` as well, by suffix: one column for a row's single medium, as other tasks name it.
    "sentiment": Columns(frozenset(), frozenset({"text", "image", "audio", "file", "label"}),
                         {"image": "image", "audio": "audio", "file": ""}, one_of=frozenset({"text", "image",
                                                                                            "audio", "file"})),
}
TASKS = tuple(COLUMNS)


@dataclass(frozen=True)
class Item:
    """One test item: its media (raw input name -> path) and its other cells, or the reason it cannot run."""

    index: int  # 1-based: the manifest's data row, or the file's place in name order
    name: str  # what the results show for it: the `file` cell, or the text's start
    media: Mapping[str, Path] = field(default_factory=dict)  # "image"/"audio" -> a file inside the data folder
    cells: Mapping[str, Any] = field(default_factory=dict)  # the other columns, multi-valued ones as tuples
    error: str | None = None  # a row problem found while reading it (its file is missing): reported, not run


def media_kind(path: str | PurePosixPath | Path) -> str | None:
    """"image", "audio", "archive" or None, from the file name's suffix."""
    suffix = PurePosixPath(str(path)).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in ARCHIVE_SUFFIXES:
        return "archive"
    return None


def find_manifest(root: Path) -> Path | None:
    """The manifest at the data folder's top (or inside its only top folder, as a zipped folder has); refuses two."""
    for folder in (root, *_only_subfolder(root)):
        found = [folder / name for name in MANIFEST_NAMES if (folder / name).is_file()]
        if len(found) > 1:
            raise InputError("error.manifest.two")
        if found:
            return found[0]
    return None


def _only_subfolder(root: Path) -> list[Path]:
    entries = [entry for entry in root.iterdir() if not entry.name.startswith((".", "__MACOSX"))]
    return entries if len(entries) == 1 and entries[0].is_dir() else []


def read_rows(path: Path, *, max_rows: int, truncate: bool = False) -> list[dict[str, Any]]:
    """The manifest's data rows as dicts by lower-case column name; InputError for the file as a whole.

    Args:
        path: a manifest.csv (comma separated, header first) or manifest.jsonl (one object a line).
        max_rows: more data rows than this are refused before any is used...
        truncate: ...or, when set, only the first `max_rows` are read (a smoke check of part of a set).
    """
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise InputError("error.manifest.too_large", name=path.name, size_mb=size / 1e6,
                         limit_mb=MAX_MANIFEST_BYTES / 1e6)
    data = path.read_bytes()
    if b"\0" in data:
        raise InputError("error.manifest.binary", name=path.name)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is dropped, not refused
    except UnicodeDecodeError as e:
        raise InputError("error.manifest.not_utf8", name=path.name, byte=e.start) from e
    rows = _jsonl_rows(text, path.name) if path.suffix == ".jsonl" else _csv_rows(text, path.name)
    kept: list[dict[str, Any]] = []
    for row in rows:
        if len(kept) == max_rows:
            if truncate:
                break
            raise InputError("error.manifest.too_many_rows", name=path.name, limit=max_rows)
        kept.append(row)
    if not kept:
        raise InputError("error.manifest.no_rows", name=path.name)
    return kept


def _csv_rows(text: str, name: str) -> Iterator[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise InputError("error.manifest.no_header", name=name)
        columns = [cell.strip().lower() for cell in header]
        if len(set(columns)) != len(columns):
            raise InputError("error.manifest.duplicate_column", name=name, columns=", ".join(columns))
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(cells) > len(columns):
                raise InputError("error.manifest.too_many_cells", name=name, line=number, cells=len(cells),
                                 columns=len(columns))
            yield dict(zip(columns, cells))
    except csv.Error as e:
        raise InputError("error.manifest.bad_csv", name=name, error=str(e)) from e


def _jsonl_rows(text: str, name: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise InputError("error.manifest.bad_json_line", name=name, line=number) from e
        if not isinstance(row, dict):
            raise InputError("error.manifest.not_object", name=name, line=number)
        yield {str(key).strip().lower(): value for key, value in row.items()}


def check_columns(task: str, columns: Iterable[str], manifest_name: str) -> None:
    """InputError naming the unknown or missing columns and the valid ones."""
    spec = COLUMNS[task]
    given = set(columns)
    unknown = sorted(given - spec.allowed)
    valid = ", ".join(sorted(spec.allowed))
    if unknown:
        raise InputError("error.manifest.unknown_columns", name=manifest_name, columns=", ".join(unknown), task=task,
                         valid=valid)
    missing = sorted(spec.required - given)
    if missing:
        raise InputError("error.manifest.missing_columns", name=manifest_name, columns=", ".join(missing), task=task,
                         valid=valid)
    if spec.one_of and not spec.one_of & given:
        raise InputError("error.manifest.needs_one_of", name=manifest_name, columns=", ".join(sorted(spec.one_of)),
                         task=task)


def split_values(value: Any) -> tuple[str, ...]:
    """A multi-valued cell: `a|b|c` (or a JSON list) -> its non-empty, stripped values."""
    values = value if isinstance(value, (list, tuple)) else str(value if value is not None else "").split(SEPARATOR)
    return tuple(text for text in (" ".join(str(v).split()) for v in values) if text)


def _cell(value: Any, column: str, number: int) -> str:
    if isinstance(value, (dict, list, tuple)):
        raise InputError("error.manifest.cell_not_text", row=number, column=column, kind=type(value).__name__)
    text = "" if value is None else str(value)
    if len(text) > MAX_CELL_CHARS:
        raise InputError("error.manifest.cell_too_long", row=number, column=column, length=len(text),
                         limit=MAX_CELL_CHARS)
    return text.strip()


def items_from_rows(task: str, rows: list[dict[str, Any]], root: Path, manifest_name: str) -> list[Item]:
    """Items for a manifest's rows; file cells are resolved inside `root` (a row whose file is missing or outside
    it gets an error of its own)."""
    spec = COLUMNS[task]
    check_columns(task, set().union(*(row.keys() for row in rows)), manifest_name)
    index = FileIndex(root)
    items = []
    for number, row in enumerate(rows, start=1):
        media: dict[str, Path] = {}
        cells: dict[str, Any] = {}
        errors: list[str] = []
        for column, value in row.items():
            if column in spec.multi and isinstance(value, (list, tuple)):
                cells[column] = split_values(value)
                continue
            text = _cell(value, column, number)
            if column in spec.media:
                if not text:
                    continue
                path, problem = index.resolve(text)
                kind = spec.media[column] or media_kind(text) or "file"
                if problem:
                    errors.append(problem)
                elif kind not in ("image", "audio"):
                    errors.append(f"{text} is neither an image nor audio file (by its name): give a media file")
                else:
                    media[kind] = path
                cells[column] = text
            elif column in spec.multi:
                cells[column] = split_values(text)
            elif text:
                cells[column] = text
        name = str(cells.get("file") or cells.get("image") or cells.get("audio") or cells.get("text", "")[:40])
        items.append(Item(number, name or f"row {number}", media, cells, "; ".join(errors) or None))
    return items


def items_from_files(task: str, root: Path, *, max_items: int, truncate: bool = False) -> tuple[list[Item], list[str]]:
    """Without a manifest: one item per image (or audio clip, for speech) under `root`, in name order; also the
    names of the files skipped (other kinds, nested archives). More than `max_items` are refused, or with
    `truncate` only the first `max_items` kept."""
    if task in ("vqa", "sentiment"):
        needs = Message("error.manifest.needs.question" if task == "vqa" else "error.manifest.needs.text_or_label")
        raise InputError("error.manifest.needed", task=task, needs=needs)
    wanted = "audio" if task == "speech" else "image"
    items: list[Item] = []
    skipped: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(relative).parts):
            continue
        if media_kind(path) != wanted:
            skipped.append(relative)
            continue
        if len(items) == max_items:
            if truncate:
                break
            raise InputError("error.manifest.too_many_files", limit=max_items,
                             kind=Message(f"error.manifest.kind.{wanted}"))
        items.append(Item(len(items) + 1, relative, {wanted: path}, {"file": relative}))
    if not items:
        suffixes = ", ".join(sorted(AUDIO_SUFFIXES if wanted == "audio" else IMAGE_SUFFIXES))
        raise InputError("error.manifest.no_files", kind=Message(f"error.manifest.kind.{wanted}"), task=task,
                         suffixes=suffixes)
    return items, skipped


class FileIndex:
    """Resolves a manifest's file cells inside the data folder: by relative path, else by unique file name (a folder
    upload arrives flattened). Nothing outside the folder is reachable, whatever the cell says."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._by_name: dict[str, list[Path]] = {}
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                self._by_name.setdefault(path.name, []).append(path)

    def resolve(self, cell: str) -> tuple[Path | None, str | None]:
        """(the file, None) or (None, the row's error)."""
        relative = PurePosixPath(cell.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts or ":" in relative.parts[0]:
            return None, f"{cell} points outside the test set: give a path inside the upload"
        if media_kind(relative) == "archive":
            return None, f"{cell} is an archive; archives inside the upload are not opened"
        candidate = (self.root / relative).resolve()
        if candidate.is_relative_to(self.root) and candidate.is_file() and not (self.root / relative).is_symlink():
            return candidate, None
        matches = self._by_name.get(relative.name, [])
        if len(matches) == 1:
            return matches[0], None
        if len(matches) > 1:
            return None, f"{cell} matches {len(matches)} files in the upload: give its folder too"
        return None, f"{cell} is not in the upload"
