"""Settings, the task registry, model sources and transcript formats."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import mmdemo.tasks  # noqa: F401
from mmdemo import registry
from mmdemo.config import Settings, parse_bytes, settings_from_args, settings_from_env
from mmdemo.errors import ModelUnavailableError
from mmdemo.models.sources import HubProbe, ModelLocator, local_model_dir
from mmdemo.tasks.base import Task
from mmdemo.tasks.speech.subtitles import render, to_srt, to_vtt
from mmdemo.tasks.vqa import VqaTask


def test_env_and_flags_override_defaults_in_order(tmp_path):
    env = {"MMDEMO_MEMORY_BUDGET": "2GiB", "MMDEMO_DEVICE": "cpu", "MMDEMO_PRELOAD": "vqa, speech",
           "MMDEMO_MODEL_DIR": str(tmp_path), "MMDEMO_ALLOW_CUSTOM_MODELS": "1"}
    settings = settings_from_env(env)
    assert settings.memory_budget == 2 * 1024**3
    assert settings.preload == ("vqa", "speech")
    assert settings.model_dir == tmp_path and settings.allow_custom_models is True
    flags = settings_from_args(["--memory-budget", "512MB", "--dtype", "bfloat16", "--preload"], env)
    assert flags.memory_budget == 512 * 1000**2 and flags.dtype == "bfloat16"
    assert flags.preload == ("all",) and flags.device == "cpu"
    assert Settings().allow_custom_models is False and Settings().max_audio_seconds == 600


@pytest.mark.parametrize(("text", "expected"), [("1024", 1024), ("1.5G", int(1.5 * 1024**3)), ("8GB", 8 * 10**9)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_env_value_names_the_variable():
    with pytest.raises(ValueError, match="MMDEMO_MEMORY_BUDGET='lots' is not valid"):
        settings_from_env({"MMDEMO_MEMORY_BUDGET": "lots"})


def test_registry_refuses_duplicates_and_lists_valid_names():
    assert registry.names()[:4] == ["vqa", "captioning", "zero_shot", "speech"]
    with pytest.raises(ValueError, match="'vqa' is already registered"):
        registry.register(VqaTask())
    with pytest.raises(KeyError, match="Unknown task 'ocr': choose one of .*captioning.*speech.*vqa"):
        registry.get("ocr")


def test_every_task_declares_its_contract():
    for name in registry.names():
        task = registry.get(name)
        assert isinstance(task, Task)
        assert task.title and task.description and task.models
        assert task.default_model is task.models[0]
        assert len({m.id for m in task.models}) == len(task.models)


def test_local_model_dir_refuses_path_tricks(tmp_path):
    assert local_model_dir(tmp_path, "org/name") == tmp_path / "org" / "name"
    for bad in ("../etc", "org/../../x", "/abs/path", "a/b/c", "", "org\\name"):
        with pytest.raises(ModelUnavailableError, match="not a valid model id"):
            local_model_dir(tmp_path, bad)


def test_locator_prefers_local_dir_and_explains_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "org" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    locator = ModelLocator(tmp_path)
    assert locator.locate("org/tiny") == model
    assert locator.is_local("org/tiny") and not locator.is_local("org/missing")
    with pytest.raises(ModelUnavailableError, match=r"org/missing is not available offline \(HF_HUB_OFFLINE is set\)"):
        locator.locate("org/missing")


def test_unreachable_hub_is_noticed_once_and_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    probe = HubProbe(timeout=1.0)
    calls = []
    original = probe._ask
    monkeypatch.setattr(probe, "_ask", lambda: calls.append(1) or original())
    started = time.monotonic()
    assert probe.reachable() is False
    assert probe.reachable() is False
    assert time.monotonic() - started < 3
    assert calls == [1]


SEGMENTS = [{"start": 0.0, "end": 2.5, "text": " Hello there."}, {"start": 2.5, "end": 3661.042, "text": "Bye."}]


def test_srt_and_vtt_formats():
    assert to_srt(SEGMENTS) == ("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
                                "2\n00:00:02,500 --> 01:01:01,042\nBye.\n")
    assert to_vtt(SEGMENTS).splitlines()[:3] == ["WEBVTT", "", "00:00:00.000 --> 00:00:02.500"]
    assert render("txt", " Hello there. Bye. ", SEGMENTS) == "Hello there. Bye.\n"
    with pytest.raises(ValueError, match="choose one of txt, srt, vtt"):
        render("docx", "", SEGMENTS)


def test_nothing_heavy_at_import(tmp_path):
    import subprocess
    import sys

    code = "import sys, mmdemo.ui, mmdemo.tasks; print('transformers.models.blip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_model_code_is_imported_once_the_page_is_served_and_loads_wait_for_it(tmp_path, tiny_model_dir):
    import json
    import subprocess
    import sys

    code = f"""
import json, logging, socket, sys, time, urllib.request
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from mmdemo.config import Settings
from mmdemo.backends import local_runtime
from mmdemo.ui import launch
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
settings = Settings(model_dir=Path({str(tiny_model_dir)!r}), device="cpu", port=port, memory_budget=2**32)
runtime = local_runtime(settings)
before = "transformers.models.blip.modeling_blip" in sys.modules
demo = launch(settings, runtime=runtime, prevent_thread_lock=True)
importing = not runtime.predictor.loader._code_imported.is_set()
page = urllib.request.urlopen(f"http://127.0.0.1:{{port}}/", timeout=30).status
result = runtime.run("sentiment", {{"text": "what a great day"}})  # its load waits for the import
done = runtime.predictor.loader._code_imported.is_set()
modules = [m for m in ("blip", "clip", "whisper", "roberta", "vilt")
           if f"transformers.models.{{m}}.modeling_{{m}}" in sys.modules]
print(json.dumps({{"before": before, "importing": importing, "page": page, "done": done, "modules": modules,
                   "label": result["label"]}}))
demo.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
    assert report["before"] is False  # building the runtime imports no model code
    assert report["importing"] is True and report["page"] == 200  # the page is served while it imports
    assert report["done"] is True  # the first load waited for the import instead of racing it
    assert report["modules"] == ["blip", "clip", "whisper", "roberta", "vilt"]  # every tab's, not just this one's
    assert report["label"] in {"positive", "negative", "neutral"}
    assert "Imported the model code of every tab" in out.stderr


def test_a_downloaded_model_is_located_without_asking_the_hub_again(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    snapshot = tmp_path / "hub" / "org" / "remote"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    probe = HubProbe()
    monkeypatch.setattr(probe, "reachable", lambda: True)
    locator = ModelLocator(tmp_path / "local", probe)
    downloads = []
    monkeypatch.setattr(locator, "_download", lambda model_id, revision: downloads.append(model_id) or snapshot)
    assert locator.locate("org/remote") == snapshot
    assert locator.locate("org/remote") == snapshot
    assert downloads == ["org/remote"]
