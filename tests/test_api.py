"""The built Gradio app driven through gradio_client, for every api_name, including the error cases."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import mmdemo.tasks  # noqa: F401
from mmdemo.config import Settings
from mmdemo.runtime import Runtime
from mmdemo.ui import build_demo

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = str(ASSETS / "skimage_chelsea.png")
JFK = str(ASSETS / "jfk.flac")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    runtime = Runtime(Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu"))
    demo = build_demo(runtime)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_every_task_has_a_named_endpoint(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/vqa", "/captioning", "/zero_shot", "/speech", "/models", "/preload", "/unload"} <= names


def test_vqa_endpoint(client):
    result = client.predict(handle_file(CAT), "What animal is this?", "dandelin/vilt-b32-finetuned-vqa",
                            api_name="/vqa")
    assert result["question"] == "What animal is this?"
    assert len(result["answers"]) == 5
    assert result["answer"] == result["answers"][0]["answer"]
    assert all(0.0 <= a["score"] <= 1.0 for a in result["answers"])
    assert result["provenance"]["models"]["model"] == "dandelin/vilt-b32-finetuned-vqa"


def test_captioning_endpoint(client):
    result = client.predict(handle_file(CAT), "", "Salesforce/blip-image-captioning-base", "beam", 3, 0.9, 1.0, 0,
                            12, 2, api_name="/captioning")
    assert 1 <= len(result["captions"]) <= 2 and result["caption"] == result["captions"][0]
    assert result["decoding"] == "beam"


def test_zero_shot_endpoint(client):
    result = client.predict(handle_file(CAT), "cat, dog, bird", "openai/clip-vit-base-patch32",
                            "a photo of a {}.", False, api_name="/zero_shot")
    assert sorted(item["label"] for item in result["labels"]) == ["bird", "cat", "dog"]
    assert sum(item["score"] for item in result["labels"]) == pytest.approx(1.0, abs=1e-4)


def test_speech_endpoint(client):
    result = client.predict(handle_file(JFK), "openai/whisper-base", "auto", "transcribe", "segment",
                            api_name="/speech")
    assert result["duration"] == pytest.approx(11.0, abs=0.1)
    assert set(result["downloads"]) == {"txt", "srt", "vtt"}
    assert result["downloads"]["vtt"].startswith("WEBVTT")


def test_models_panel_endpoints(client):
    report = client.predict("zero_shot", api_name="/preload")
    assert "openai/clip-vit-base-patch32" in [e["model"] for e in report["entries"]]
    assert report["budget_bytes"] == 4 * 1024**3
    report = client.predict("openai/clip-vit-base-patch32", api_name="/unload")
    assert "openai/clip-vit-base-patch32" not in [e["model"] for e in report["entries"]]
    report = client.predict(api_name="/models")
    assert report["evictions"] >= 1 and report["device"] == "cpu"
    with pytest.raises(AppError, match="is not loaded"):
        client.predict("openai/clip-vit-base-patch32", api_name="/unload")


@pytest.mark.parametrize(
    ("api_name", "args", "message"),
    [
        ("/vqa", (None, "What is this?", "Salesforce/blip-vqa-base"), "No image"),
        ("/vqa", (handle_file(CAT), "  ", "Salesforce/blip-vqa-base"), "Question is empty"),
        ("/zero_shot", (handle_file(CAT), "cat", "openai/clip-vit-base-patch32", "a photo of a {}.", False),
         "at least 2 different labels"),
        ("/speech", (None, "openai/whisper-base", "auto", "transcribe", "none"), "No audio"),
        ("/vqa", (handle_file(CAT), "What?", "evil/remote-code"), "not in the list of choices"),
    ],
)
def test_errors_are_one_line_messages(client, api_name, args, message):
    with pytest.raises(AppError, match=message) as info:
        client.predict(*args, api_name=api_name)
    assert "\n" not in str(info.value)


def test_bad_files_are_refused_and_the_server_keeps_serving(client, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(8000, dtype=np.int16), 16_000)
    with pytest.raises(AppError, match="silent"):
        client.predict(handle_file(str(silent)), "openai/whisper-base", "auto", "transcribe", "none",
                       api_name="/speech")
    fake = tmp_path / "notes.wav"
    fake.write_text("not audio at all")
    with pytest.raises(AppError, match="not audio"):
        client.predict(handle_file(str(fake)), "openai/whisper-base", "auto", "transcribe", "none",
                       api_name="/speech")
    fake_image = tmp_path / "photo.png"
    fake_image.write_text("not an image either")
    with pytest.raises(AppError, match="not an image that can be read"):
        client.predict(handle_file(str(fake_image)), "What?", "Salesforce/blip-vqa-base", api_name="/vqa")
    # ...and the next good request works.
    result = client.predict(handle_file(CAT), "What animal is this?", "Salesforce/blip-vqa-base", api_name="/vqa")
    assert isinstance(result["answer"], str)
