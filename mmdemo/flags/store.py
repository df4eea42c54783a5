"""The flag store: a tester's 👍/👎 on a result, with a note, the inputs, the parameters and every model's result.

Layout under the store's root (MMDEMO_FLAG_DIR):
    flags.jsonl                   one JSON record per line, appended
    media/<ab>/<sha256><suffix>   the flagged uploads, content-addressed: a file flagged twice is kept once
    .lock                         serialises writers across threads and processes (fcntl)

Gradio's `FlaggingCallback`/`CSVLogger` writes one CSV row per flag of a fixed set of components, copying every
file anew; these records vary by task and mode (one result or four), keep media once, and need filters, a size cap
and safe concurrent appends from several processes, so the store is a JSONL file with locked appends instead.
A line is written with one `write` under the lock, so readers never see two records interleaved; a line cut short
by a crash is skipped when reading.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmdemo.errors import InputError, VisitorError
from mmdemo.i18n import Message

RATINGS = ("up", "down")
MODES = ("single", "compare")
MAX_NOTE_CHARS = 2_000
FLAG_ID = re.compile(r"^[0-9a-f]{16}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Uploads keep their suffix (a player or viewer needs it); anything else is stored as .bin.
MEDIA_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".wav", ".flac",
                            ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm"})
RESULT_KEYS_DROPPED = ("downloads",)  # bulky copies of what a result already holds (a transcript as .srt, .vtt)


class FlagStoreError(VisitorError, RuntimeError):
    """The store cannot take a flag now (full, read-only, missing); the message says what the owner can do."""


class FlagStore:
    """Flags on disk under `root`, refused once the store holds `max_bytes`."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @property
    def journal(self) -> Path:
        return self.root / "flags.jsonl"

    # ---- writing

    def add(self, *, task: str, mode: str, rating: str, note: str = "", correction: str = "", best: str | None = None,
            inputs: Mapping[str, Any], media: Mapping[str, str | os.PathLike | None],
            results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store one flag; the record as written.

        Args:
            inputs: the request's other inputs and parameters (plain JSON values).
            media: input name -> the uploaded file (copied into the store; None: not given).
            results: [{"model", "result" | "error", "ms"}], one per model (one in single mode).
        Raises:
            InputError: a bad rating, mode, note or best model. FlagStoreError: the store is full or not writable.
        """
        if rating not in RATINGS:
            raise InputError("error.flags.rating", choices=", ".join(RATINGS), rating=rating)
        if mode not in MODES:
            raise InputError("error.flags.mode", choices=", ".join(MODES), mode=mode)
        note = _text(note, Message("error.field.note"))
        correction = _text(correction, Message("error.field.correction"))
        models = [str(r.get("model", "")) for r in results]
        if not results:
            raise InputError("error.flags.no_result")
        if best and best not in models:
            raise InputError("error.flags.best_model", model=best)
        record = {
            "id": secrets.token_hex(8),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "task": task, "mode": mode, "rating": rating, "note": note, "correction": correction,
            "best": best or None, "models": models,
            "inputs": json.loads(json.dumps(dict(inputs), default=str)),
            "media": {},
            "results": [_slim(r) for r in results],
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with self._writing():
            size = self._size() + len(line)  # once per flag, under the lock; each new media file adds to it
            if size > self.max_bytes:
                raise self._full()
            for name, path in media.items():
                if path:
                    record["media"][name], added = self._keep(Path(path), size)
                    size += added
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
            fd = os.open(self.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if _ends_unfinished(fd):  # a line cut short by a crash: this record starts a line of its own
                    line = b"\n" + line
                if os.write(fd, line) != len(line):
                    raise OSError("short write")
            finally:
                os.close(fd)
        return record

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the thread lock and the store's file lock; OS errors become one line for the visitor."""
        try:
            with self._lock:
                (self.root / "media").mkdir(parents=True, exist_ok=True)
                with open(self.root / ".lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as e:
            raise FlagStoreError("error.flags.not_writable", reason=e.strerror or type(e).__name__) from e

    def _full(self) -> FlagStoreError:
        return FlagStoreError("error.flags.full", size_mb=self.max_bytes / 1e6)

    def _keep(self, source: Path, size: int) -> tuple[dict[str, str], int]:
        """Copy an upload into media/ under its content hash (once), given the store's `size`; its reference and the
        bytes it added."""
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        suffix = source.suffix.lower() if source.suffix.lower() in MEDIA_SUFFIXES else ".bin"
        relative = Path("media") / sha[:2] / f"{sha}{suffix}"
        target = self.root / relative
        added = 0
        if not target.exists():
            added = source.stat().st_size
            if size + added > self.max_bytes:
                raise self._full()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
                    shutil.copyfileobj(f, out)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return {"file": relative.as_posix(), "sha256": sha, "name": _safe_name(source.name)}, added

    def _size(self) -> int:
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    # ---- reading

    def records(self) -> list[dict[str, Any]]:
        """Every flag, oldest first; lines that are not a whole record (a crash mid-write) are skipped."""
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise FlagStoreError("error.flags.not_readable", reason=e.strerror) from e
        out = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and FLAG_ID.match(str(record.get("id", ""))):
                out.append(record)
        return out

    def find(self, *, task: str | None = None, model: str | None = None, rating: str | None = None,
             since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
        """The flags matching every filter given, newest first. Dates are YYYY-MM-DD (UTC), both ends included."""
        if rating and rating not in RATINGS:
            raise InputError("error.flags.rating", choices=", ".join(RATINGS), rating=rating)
        for name, value in (("error.field.since", since), ("error.field.until", until)):
            if value and not DATE.match(value):
                raise InputError("error.flags.date", what=Message(name), value=value[:40])
        found = [r for r in self.records()
                 if (not task or r.get("task") == task) and (not model or model in r.get("models", []))
                 and (not rating or r.get("rating") == rating)
                 and (not since or str(r.get("time", ""))[:10] >= since)
                 and (not until or str(r.get("time", ""))[:10] <= until)]
        return found[::-1]

    def get(self, flag_id: str) -> dict[str, Any]:
        if not FLAG_ID.match(str(flag_id)):
            raise InputError("error.flags.bad_id", flag_id=str(flag_id)[:40])
        for record in self.records():
            if record["id"] == flag_id:
                return record
        raise InputError("error.flags.no_such_flag", flag_id=flag_id)

    def media_path(self, reference: Mapping[str, Any]) -> Path:
        """The stored file of a media reference; refused unless it is a file under media/ (a hand-edited or
        tampered record cannot point the store at any other file)."""
        media = (self.root / "media").resolve()
        path = (self.root / str(reference.get("file", ""))).resolve()
        if not path.is_relative_to(media) or not path.is_file():
            raise InputError("error.flags.outside_store", file=str(reference.get("file"))[:60])
        return path


def _ends_unfinished(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _text(value: Any, what: Message) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) > MAX_NOTE_CHARS:
        raise InputError("error.text.too_long", what=what, length=len(text), limit=MAX_NOTE_CHARS)
    return text


def _slim(result: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(result)
    if isinstance(out.get("result"), Mapping):
        out["result"] = {k: v for k, v in out["result"].items() if k not in RESULT_KEYS_DROPPED}
    return json.loads(json.dumps(out, default=str))


def _safe_name(name: str) -> str:
    """An upload's name for display only: no folders, no control characters, at most 100 characters."""
    return re.sub(r"[^\w .()-]", "_", Path(name).name)[:100]
