"""Hugging Face Spaces: the README front matter, the ZeroGPU shim and what it wraps, import order, serving on a Space.

ZeroGPU is played by a stand-in `spaces` module (never the real package): it records what `spaces.GPU` wraps and the
durations asked, and passes each call's arguments and result through pickle, refusing tensors and models, the way
ZeroGPU's worker process receives them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from huggingface_hub import SpaceCard
from packaging.specifiers import SpecifierSet
from PIL import Image

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import registry
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.errors import ModelUnavailableError
from mmdemo.media import AudioClip
from mmdemo.models import devices
from mmdemo.tasks.base import DEFAULT_GPU_SECONDS, GPU_SETUP_SECONDS, Task
from mmdemo.tasks.captioning import CaptionInputs, CaptionOptions
from mmdemo.tasks.speech.task import SpeechInputs
from mmdemo.tasks.zero_shot import ENSEMBLE_TEMPLATES, ZeroShotInputs
from mmdemo.testing.servers import free_port

REPO = Path(__file__).resolve().parents[1]
CAT = str(REPO / "assets" / "skimage_chelsea.png")
SPACE_ENV = {"SPACES_ZERO_GPU": "true", "SPACE_ID": "someone/mmdemo"}

STAND_IN = '''
"""Stand-in for Hugging Face's `spaces` package (ZeroGPU), for tests."""
import io
import pickle

wrapped = []  # names of the functions spaces.GPU wrapped
calls = []  # (function name, seconds asked) for each call
inside = False  # whether a wrapped function is running ("on the GPU")
auto_wrap_disabled = False


class _WorkerPickler(pickle.Pickler):
    def reducer_override(self, obj):
        import torch

        if isinstance(obj, (torch.Tensor, torch.nn.Module)):
            raise pickle.PicklingError(f"a {type(obj).__name__} would be copied into the GPU worker")
        return NotImplemented


def _across(value):
    buffer = io.BytesIO()
    _WorkerPickler(buffer).dump(value)
    return pickle.loads(buffer.getvalue())


def GPU(task=None, *, duration=None, size=None):
    if task is None:
        return lambda fn: GPU(fn, duration=duration, size=size)
    wrapped.append(task.__name__)

    def gpu_handler(*args, **kwargs):
        global inside
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        calls.append((task.__name__, seconds))
        args, kwargs = _across((args, kwargs))
        inside = True
        try:
            result = task(*args, **kwargs)
        except Exception as e:  # like ZeroGPU: the worker's exception reaches the app as a generic error
            raise RuntimeError(f"ZeroGPU worker error: {type(e).__name__}") from None
        finally:
            inside = False
        return _across(result)

    return gpu_handler


def disable_gradio_auto_wrap():
    global auto_wrap_disabled
    auto_wrap_disabled = True
'''


def stand_in_spaces() -> types.ModuleType:
    module = types.ModuleType("spaces")
    exec(compile(STAND_IN, "spaces_stand_in", "exec"), module.__dict__)
    return module


@pytest.fixture
def zero_gpu(monkeypatch) -> types.ModuleType:
    """This process on a ZeroGPU Space, with the stand-in as its `spaces` package."""
    spaces = stand_in_spaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    for name, value in SPACE_ENV.items():
        monkeypatch.setenv(name, value)
    return spaces


def cpu_settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, memory_budget=4 * 1024**3, device="cpu")


def load_app() -> types.ModuleType:
    """app.py as a module (its imports run, its launch does not)."""
    spec = importlib.util.spec_from_file_location("app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



# ------------------------------------------------------------------------------------------- front matter


def front_matter() -> dict:
    return SpaceCard.load(REPO / "README.md").data.to_dict()


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    found = (re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line) for line in lines)
    return {m.group(1).lower(): m.group(2) for m in found if m}


def test_front_matter_is_a_gradio_space_matching_the_code():
    meta = front_matter()
    import gradio

    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio.__version__ == pins()["gradio"]
    assert meta["app_file"] == "app.py" and (REPO / meta["app_file"]).is_file()
    assert meta["title"] and meta["emoji"] and meta["license"]
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colours and meta["colorTo"] in colours
    assert 0 < len(meta["short_description"]) <= 60  # the hub refuses longer ones
    defaults = {registry.get(name).default_model.id for name in registry.names()}
    assert set(meta["models"]) == defaults and len(meta["models"]) == len(defaults)


def test_front_matter_python_suits_every_pinned_requirement():
    python = str(front_matter()["python_version"])
    assert re.fullmatch(r"3\.\d+(\.\d+)?", python), "quote it: YAML reads 3.10 as the number 3.1"
    for name, version in pins().items():
        installed = importlib.metadata.distribution(name)
        assert installed.version == version, f"tests run {name} {installed.version}, requirements.txt pins {version}"
        requires = installed.metadata["Requires-Python"] or ""
        assert SpecifierSet(requires).contains(python), f"{name} {version} needs Python {requires}"


# ------------------------------------------------------------------------------------------------ the shim


def test_without_zero_gpu_the_shim_returns_the_function_itself(monkeypatch):
    def predict(x):
        return x

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setitem(sys.modules, "spaces", stand_in_spaces())
    assert devices.gpu_function(predict, duration=lambda x: 1.0) is predict

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # ZeroGPU variable set, package missing: import fails
    assert devices.gpu_function(predict, duration=lambda x: 1.0) is predict


def test_zero_gpu_asks_whole_seconds_computed_from_the_arguments(zero_gpu):
    double = devices.gpu_function(lambda x: 2 * x, duration=lambda x: 0.2 * x)
    assert zero_gpu.wrapped == ["<lambda>"]
    assert double(3) == 6 and double(12) == 24
    assert [seconds for _, seconds in zero_gpu.calls] == [1, 3]  # 0.6 and 2.4 rounded up


def test_zero_gpu_never_asks_cuda_in_this_process(zero_gpu, monkeypatch):
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA was queried in the main process")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", no_cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", no_cuda)
    budget = devices.default_memory_budget("cuda")
    assert 0 < budget <= devices.ZERO_GPU_MEMORY * devices.GPU_BUDGET_SHARE
    assert devices.resolve_dtype("cuda") == torch.bfloat16
    devices.empty_device_cache()


# ------------------------------------------------------------------------------- what the runtime wraps


def test_runtime_wraps_each_tasks_predict_once(zero_gpu, tiny_model_dir):
    runtime = local_runtime(cpu_settings(tiny_model_dir))
    assert zero_gpu.wrapped == [f"predict_{name}" for name in registry.names()]
    task = registry.get("zero_shot")
    assert runtime.predictor.predict_function(task) is runtime.predictor.predict_function(task)
    local_runtime(cpu_settings(tiny_model_dir))  # another runtime wraps its own
    assert len(zero_gpu.wrapped) == 2 * len(registry.names())


def test_only_predict_runs_on_the_gpu_for_the_duration_of_its_inputs(zero_gpu, tiny_model_dir, monkeypatch):
    runtime = local_runtime(cpu_settings(tiny_model_dir))
    task = registry.get("zero_shot")
    where: dict[str, bool] = {}
    for step in ("validate", "predict_batch", "format"):
        original = getattr(task, step)

        def spy(*args, _original=original, _step=step, **kwargs):
            where[_step] = zero_gpu.inside
            return _original(*args, **kwargs)

        monkeypatch.setattr(task, step, spy)
    raw = {"image": CAT, "labels": "cat, dog, bird, fish", "ensemble": True, "model": "openai/clip-vit-base-patch32"}
    result = runtime.run("zero_shot", raw)

    assert where == {"validate": False, "predict_batch": True, "format": False}
    assert sum(item["score"] for item in result["labels"]) == pytest.approx(1.0, abs=1e-4)
    expected = math.ceil(task.gpu_seconds(task.validate(raw, runtime.settings)))
    assert zero_gpu.calls == [("predict_zero_shot", expected)]
    assert expected == math.ceil(GPU_SETUP_SECONDS + 2 + 0.01 * 4 * len(ENSEMBLE_TEMPLATES))


def test_speech_asks_for_time_in_proportion_to_the_audio(zero_gpu, tiny_model_dir):
    runtime = local_runtime(cpu_settings(tiny_model_dir))
    result = runtime.run("speech", {"audio": str(REPO / "assets" / "jfk.flac"), "timestamps": "segment"})
    assert result["duration"] == pytest.approx(11.0, abs=0.1)
    (name, seconds), = zero_gpu.calls
    assert name == "predict_speech" and seconds == math.ceil(GPU_SETUP_SECONDS + 2 + 22 * 11 / 30 + 0.15 * 11)


@pytest.mark.parametrize(("task", "raw"), [
    ("vqa", {"image": CAT, "question": "What animal is this?"}),
    ("captioning", {"image": CAT, "num_captions": 2}),
    ("sentiment", {"text": "I love this photo", "image": CAT}),
])
def test_every_tab_crosses_the_gpu_worker_boundary(zero_gpu, tiny_model_dir, task, raw):
    result = local_runtime(cpu_settings(tiny_model_dir)).run(task, raw)
    assert result["provenance"]["models"]
    assert [name for name, _ in zero_gpu.calls] == [f"predict_{task}"]


def test_compare_makes_one_gpu_call_per_model(zero_gpu, tiny_model_dir):
    from mmdemo.compare import compare

    runtime = local_runtime(cpu_settings(tiny_model_dir))
    out = compare(runtime, "vqa", {"image": CAT, "question": "What animal is this?"},
                  ["Salesforce/blip-vqa-base", "dandelin/vilt-b32-finetuned-vqa"])
    assert all("result" in entry for entry in out["results"])
    assert [name for name, _ in zero_gpu.calls] == ["predict_vqa", "predict_vqa"]  # each within its own duration


def test_visitor_errors_raised_in_predict_keep_their_message(zero_gpu, tiny_model_dir, monkeypatch):
    runtime = local_runtime(cpu_settings(tiny_model_dir))

    def refuse(bundles, batch):
        raise ModelUnavailableError("This text model's classes are ['joy']: pick another model")

    monkeypatch.setattr(registry.get("vqa"), "predict_batch", refuse)
    with pytest.raises(ModelUnavailableError, match="pick another model"):
        runtime.run("vqa", {"image": CAT, "question": "What is it?", "model": "dandelin/vilt-b32-finetuned-vqa"})


def test_a_gpu_worker_forked_before_a_model_was_loaded_loads_its_own_copy(tiny_model_dir, monkeypatch):
    runtime = local_runtime(cpu_settings(tiny_model_dir))
    task = registry.get("vqa")
    inputs = task.validate({"image": CAT, "question": "What is it?", "model": "dandelin/vilt-b32-finetuned-vqa"},
                           runtime.settings)
    keys = {"model": runtime.predictor.key_for(inputs.model)}
    predict_batch = runtime.predictor.predict_function(task)
    with pytest.raises(RuntimeError, match="not pinned"):  # in the app's own process that would be a bug
        predict_batch(keys, [inputs])
    monkeypatch.setattr(runtime.predictor, "_pid", -1)  # as seen from a ZeroGPU worker process
    (answers,) = predict_batch(keys, [inputs])
    assert len(answers) == 5
    assert runtime.predictor.cache.stats().entries == ()  # the worker's copy is not the app's cache


def test_durations_grow_with_the_work():
    captioning, zero_shot, speech = (registry.get(n) for n in ("captioning", "zero_shot", "speech"))
    image = Image.new("RGB", (8, 8))

    def caption(**options):
        return captioning.gpu_seconds(CaptionInputs(captioning.default_model, image, "", CaptionOptions(**options)))

    assert caption(num_beams=1) < caption(num_beams=8) < caption(num_beams=8, max_new_tokens=100)
    assert caption(num_beams=3, num_captions=5) == caption(num_beams=5, num_captions=5)

    def labels(count, templates=("{}",)):
        return zero_shot.gpu_seconds(ZeroShotInputs(zero_shot.default_model, image,
                                                    tuple(f"l{i}" for i in range(count)), templates))

    assert labels(2) < labels(50) < labels(50, ENSEMBLE_TEMPLATES)

    def audio(seconds, timestamps="none"):
        clip = AudioClip(np.zeros(16, dtype=np.float32), 16_000, 1, seconds)
        return speech.gpu_seconds(SpeechInputs(speech.default_model, clip, None, "transcribe", timestamps))

    assert audio(5) < audio(30) < audio(600) < audio(600, "word")
    assert audio(600) < 180  # a 10 minute recording stays within what ZeroGPU grants
    assert Task.gpu_seconds(captioning, None) == DEFAULT_GPU_SECONDS  # a task without an estimate: ZeroGPU's default


# ---------------------------------------------------------------------------------- the app on a Space


def test_on_a_space_the_app_serves_on_all_interfaces_unless_told_otherwise():
    app = load_app()
    assert app.app_settings([], {"SPACE_ID": "someone/mmdemo"}).host == "0.0.0.0"
    assert app.app_settings([], {"SPACE_ID": "someone/mmdemo", "MMDEMO_HOST": "127.0.0.2"}).host == "127.0.0.2"
    assert app.app_settings(["--host", "127.0.0.3"], {"SPACE_ID": "someone/mmdemo"}).host == "127.0.0.3"
    assert app.app_settings([], {}).host == "127.0.0.1"


def test_model_caches_follow_hf_home(tmp_path):
    code = ("import json; from huggingface_hub import constants; from mmdemo.config import default_model_dir; "
            "print(json.dumps([str(default_model_dir()), constants.HF_HUB_CACHE]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMDEMO_", "HF_HUB_CACHE"))}
    env["HF_HOME"] = str(tmp_path / "data" / ".huggingface")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    model_dir, hub_cache = json.loads(out.stdout)
    assert Path(model_dir) == tmp_path / "data" / ".huggingface" / "mmdemo" / "models"
    assert Path(hub_cache) == tmp_path / "data" / ".huggingface" / "hub"


IMPORT_ORDER = r'''
import importlib.abc, importlib.machinery, json, sys

EVENTS = []


class Watch(importlib.abc.MetaPathFinder):
    """Records when torch and spaces are imported, and every later call that can initialize CUDA."""

    def find_spec(self, name, path, target=None):
        if name not in ("torch", "spaces"):
            return None
        EVENTS.append("import " + name)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if name == "torch":
            exec_module = spec.loader.exec_module

            def exec_and_watch(module):
                exec_module(module)
                cuda = module.cuda
                for attr in ("_lazy_init", "init", "is_available", "mem_get_info", "device_count",
                             "get_device_properties", "is_bf16_supported"):
                    original = getattr(cuda, attr)

                    def spy(*args, _original=original, _attr=attr, **kwargs):
                        EVENTS.append("cuda." + _attr)
                        return _original(*args, **kwargs)

                    setattr(cuda, attr, spy)

            spec.loader.exec_module = exec_and_watch
        return spec


sys.meta_path.insert(0, Watch())
import app  # what `python app.py` imports

import mmdemo.tasks
from mmdemo.backends import create_runtime
from mmdemo.ui import build_demo

runtime = create_runtime(app.app_settings([]))  # what launch() builds before serving
build_demo(runtime)
spaces = sys.modules["spaces"]
print(json.dumps({"events": EVENTS, "wrapped": spaces.wrapped, "auto_wrap_disabled": spaces.auto_wrap_disabled,
                  "device": runtime.predictor.device, "cuda_initialized": sys.modules["torch"].cuda.is_initialized()}))
'''


def test_spaces_is_imported_before_torch_and_anything_touching_cuda(tmp_path):
    (tmp_path / "spaces.py").write_text(STAND_IN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDEMO_")}
    env.update(SPACE_ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]), HF_HOME=str(tmp_path / "hf"),
               MMDEMO_MEMORY_BUDGET="1GB")
    out = subprocess.run([sys.executable, "-c", IMPORT_ORDER], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    events = report["events"]
    assert events[0] == "import spaces", events
    assert events.index("import torch") > 0
    assert report["wrapped"] == [f"predict_{name}" for name in registry.names()]
    assert report["auto_wrap_disabled"] is True
    assert not report["cuda_initialized"] and "cuda._lazy_init" not in events and "cuda.init" not in events


def test_the_app_on_a_zero_gpu_space_answers_through_gradio_client(zero_gpu, tiny_model_dir):
    from mmdemo.ui import launch

    app = load_app()

    env = {**SPACE_ENV, "MMDEMO_MODEL_DIR": str(tiny_model_dir), "MMDEMO_DEVICE": "cpu",
           "MMDEMO_MEMORY_BUDGET": "4GiB"}
    settings = app.app_settings(["--port", str(free_port())], env)
    assert settings.host == "0.0.0.0"
    settings = replace(settings, host="127.0.0.1")  # the same app, without exposing the test machine
    demo = launch(settings, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        result = client.predict(handle_file(CAT), "cat, dog, bird", "openai/clip-vit-base-patch32",
                                "a photo of a {}.", False, api_name="/zero_shot")
    finally:
        demo.close()
    assert sorted(item["label"] for item in result["labels"]) == ["bird", "cat", "dog"]
    assert sum(item["score"] for item in result["labels"]) == pytest.approx(1.0, abs=1e-4)
    assert zero_gpu.calls == [("predict_zero_shot", math.ceil(GPU_SETUP_SECONDS + 2 + 0.01 * 3))]
