"""Safe intake of a test set: a ZIP, a folder, or a folder upload's files, into a run's own working folder.

A ZIP is checked from its central directory before anything is written: member count, total uncompressed size,
encryption, paths that would leave the folder (`../`, absolute, drive letters) and symlinks. Nested archives are
copied as files but never opened. Every run gets a fresh folder (`Workspace`), deleted when the run ends or is
cancelled, so two visitors' runs never see each other's files.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType

from mmdemo.errors import InputError
from mmdemo.i18n import Message

MAX_MEMBERS = 5_000  # files in one ZIP: 500 items with an image and an audio clip each, and room to spare
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3  # what one ZIP may unpack to (a zip bomb declares far more)
MAX_RATIO = 200  # uncompressed / compressed of one member: text compresses ~10x, media barely; bombs 1000x+
_CHUNK = 1 << 20


class Workspace:
    """A run's private working folder under the system temp dir, removed on exit (also on error or cancel)."""

    def __init__(self, prefix: str = "mmdemo-eval-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _member_problem(info: zipfile.ZipInfo) -> Message | None:
    """Why a ZIP member must not be extracted, or None."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/") or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return Message("error.archive.member_outside", {"member": info.filename})
    if stat.S_ISLNK(info.external_attr >> 16):
        return Message("error.archive.member_link", {"member": info.filename})
    return None


def extract_zip(archive: Path, dest: Path, *, max_members: int = MAX_MEMBERS,
                max_bytes: int = MAX_UNCOMPRESSED_BYTES) -> Path:
    """Unpack `archive` into `dest` after checking it whole; InputError (one line) for an unsafe or broken ZIP.

    Returns:
        `dest`.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise InputError("error.archive.too_many_members", count=len(infos), limit=max_members)
            declared = sum(info.file_size for info in infos)
            if declared > max_bytes:
                raise InputError("error.archive.too_large", size_gb=declared / 1e9, limit_gb=max_bytes / 1e9)
            for info in infos:
                if info.flag_bits & 0x1:
                    raise InputError("error.archive.encrypted")
                problem = _member_problem(info)
                if problem:
                    raise InputError("error.archive.refused", problem=problem)
                if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 10 * _CHUNK:
                    raise InputError("error.archive.bomb", member=info.filename,
                                     ratio=info.file_size // max(info.compress_size, 1))
            written = 0
            dest.mkdir(parents=True, exist_ok=True)
            for info in infos:
                if info.is_dir():
                    continue
                target = dest / PurePosixPath(info.filename.replace("\\", "/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)  # the central directory's sizes may lie: count what comes out
                        if written > max_bytes:
                            raise InputError("error.archive.too_large_unpacked", limit_gb=max_bytes / 1e9)
                        sink.write(chunk)
    except zipfile.BadZipFile as e:
        raise InputError("error.archive.not_a_zip") from e
    except NotImplementedError as e:  # an unsupported compression method
        raise InputError("error.archive.compression", detail=str(e)) from e
    except RuntimeError as e:  # zipfile's "File is encrypted" for members it only then finds encrypted
        raise InputError("error.archive.encrypted") from e
    except (zipfile.LargeZipFile, EOFError, OSError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError("error.archive.damaged", error=type(e).__name__) from e
    return dest


def gather_files(files: Sequence[str | Path], dest: Path, *, max_members: int = MAX_MEMBERS,
                 max_bytes: int = MAX_UNCOMPRESSED_BYTES) -> Path:
    """A folder upload (its files, arriving by name) linked or copied into `dest`; the first of equal names wins.

    Returns:
        `dest`.
    """
    if len(files) > max_members:
        raise InputError("error.archive.folder_too_many_files", count=len(files), limit=max_members)
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    for file in files:
        source = Path(file)
        if source.is_symlink() or not source.is_file():
            continue
        total += source.stat().st_size
        if total > max_bytes:
            raise InputError("error.archive.folder_too_large", limit_gb=max_bytes / 1e9)
        target = dest / source.name
        if target.exists():
            continue
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, target)
    return dest


def open_data(source: str | Path | Sequence[str | Path], workspace: Workspace) -> Path:
    """The test set's folder: a ZIP unpacked into the workspace, a folder upload's files gathered there, or an
    existing folder as it is (the CLI's DATA; read, never written)."""
    if isinstance(source, (list, tuple)):
        if len(source) == 1 and str(source[0]).lower().endswith(".zip"):
            source = source[0]
        else:
            return gather_files(source, workspace.path / "data")
    path = Path(source)
    if path.is_dir():
        return path
    if not path.is_file():
        raise InputError("error.archive.missing", path=str(path))
    if not zipfile.is_zipfile(path):
        raise InputError("error.archive.not_zip_file", name=path.name)
    return extract_zip(path, workspace.path / "data")
