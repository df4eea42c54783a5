"""The built Gradio app driven through gradio_client, for every api_name, including the error cases; and the README's
"Calling the API" section checked against it: its calls run, its parameters and result keys are the real ones."""

from __future__ import annotations

import ast
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import mmdemo.tasks  # noqa: F401
from mmdemo.ui import build_demo

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
CAT = str(ASSETS / "skimage_chelsea.png")
JFK = str(ASSETS / "jfk.flac")
PROVENANCE_KEYS = {"models", "revisions", "device", "dtype", "ms", "batch_size"}
ENTRY_KEYS = {"model", "revision", "device", "dtype", "bytes", "load_seconds", "hits", "last_used", "in_use"}



@pytest.fixture(scope="module")
def url(tiny_runtime, launched):
    return launched(build_demo(tiny_runtime(model_admin="on")))


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def test_every_task_has_a_named_endpoint(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/vqa", "/captioning", "/zero_shot", "/speech", "/sentiment", "/models", "/preload", "/unload",
                     "/compare", "/flag", "/flags", "/flags_export", "/evaluate"}


def test_vqa_endpoint(client):
    result = client.predict(handle_file(CAT), "What animal is this?", "dandelin/vilt-b32-finetuned-vqa",
                            api_name="/vqa")
    assert result["question"] == "What animal is this?"
    assert len(result["answers"]) == 5
    assert result["answer"] == result["answers"][0]["answer"]
    assert all(0.0 <= a["score"] <= 1.0 for a in result["answers"])
    assert result["provenance"]["models"]["model"] == "dandelin/vilt-b32-finetuned-vqa"
    assert set(result) == {"question", "answer", "answers", "provenance"}
    assert all(set(a) == {"answer", "score"} for a in result["answers"])
    assert set(result["provenance"]) >= PROVENANCE_KEYS


def test_vqa_by_keyword_with_the_default_model(client):
    result = client.predict(image=handle_file(CAT), question="What animal is this?", api_name="/vqa")
    assert result["provenance"]["models"] == {"model": "Salesforce/blip-vqa-base"}
    assert [a["score"] for a in result["answers"]] == [None]  # BLIP writes one answer, unscored


def test_captioning_endpoint(client):
    result = client.predict(handle_file(CAT), "", "Salesforce/blip-image-captioning-base", "beam", 3, 0.9, 1.0, 0,
                            12, 2, api_name="/captioning")
    assert 1 <= len(result["captions"]) <= 2 and result["caption"] == result["captions"][0]
    assert result["decoding"] == "beam"
    assert set(result) == {"captions", "caption", "prefix", "decoding", "provenance"}


def test_zero_shot_endpoint(client):
    result = client.predict(handle_file(CAT), "cat, dog, bird", "openai/clip-vit-base-patch32",
                            "a photo of a {}.", False, api_name="/zero_shot")
    assert sorted(item["label"] for item in result["labels"]) == ["bird", "cat", "dog"]
    assert sum(item["score"] for item in result["labels"]) == pytest.approx(1.0, abs=1e-4)
    assert set(result) == {"labels", "scoring", "templates", "provenance"}
    assert all(set(item) == {"label", "score"} for item in result["labels"])
    assert result["scoring"] == "softmax" and result["templates"] == ["a photo of a {}."]


def completed_result(event_stream: str) -> dict:
    """The result in a call's event stream: the `data:` line after `event: complete`, a one-element list."""
    lines = event_stream.splitlines()
    assert "event: complete" in lines, event_stream
    return json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))[0]


def call_over_plain_http(url: str, api_name: str, data: list) -> dict:
    """What curl or fetch does: upload the files, POST the call without a session hash, read the event stream."""
    import httpx

    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as http:
        for i, value in enumerate(data):
            if isinstance(value, Path):
                with value.open("rb") as file:
                    path = http.post("/gradio_api/upload", files={"files": (value.name, file)}).json()[0]
                data[i] = {"path": path, "meta": {"_type": "gradio.FileData"}}
        event_id = http.post(f"/gradio_api/call{api_name}", json={"data": data}).json()["event_id"]
        return completed_result(http.get(f"/gradio_api/call{api_name}/{event_id}").text)


def test_calls_without_a_session_answer_as_with_one(client, url):
    args = ["cat, dog, bird", "openai/clip-vit-base-patch32", "a photo of a {}.", False, False]
    with_session = client.predict(handle_file(CAT), *args, api_name="/zero_shot")
    without = call_over_plain_http(url, "/zero_shot", [Path(CAT), *args])
    assert without["labels"] == with_session["labels"] and without["templates"] == ["a photo of a {}."]
    assert sorted(item["label"] for item in without["labels"]) == ["bird", "cat", "dog"]


def test_readme_curl_example_runs(url, client):
    import shutil
    import subprocess

    assert shutil.which("curl"), "scripts/test.sh installs curl"
    script = readme_api_section().split("```bash\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(["bash", "-c", script.replace("http://127.0.0.1:7860", url.rstrip("/"))], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    result = completed_result(done.stdout + done.stderr)
    expected = client.predict(handle_file(CAT), "cat, dog, bird", api_name="/zero_shot")
    assert result["labels"] == expected["labels"] and result["templates"] == ["a photo of a {}."]


def test_speech_endpoint(client):
    result = client.predict(handle_file(JFK), "openai/whisper-base", "auto", "transcribe", "segment",
                            api_name="/speech")
    assert result["duration"] == pytest.approx(11.0, abs=0.1)
    assert set(result["downloads"]) == {"txt", "srt", "vtt"}
    assert result["downloads"]["vtt"].startswith("WEBVTT")
    assert set(result) == {"text", "language", "task", "duration", "segments", "downloads", "words", "confidence",
                           "provenance"}
    assert all(set(segment) == {"start", "end", "text"} for segment in result["segments"])
    assert all(set(word) == {"text", "probability", "low_confidence"} for word in result["words"])
    assert all(w["low_confidence"] == (w["probability"] < result["confidence"]) for w in result["words"])


def test_speech_word_timestamps_add_words(client):
    result = client.predict(audio=handle_file(JFK), language="en", timestamps="word", api_name="/speech")
    assert result["language"] == "en"
    assert set(result) == {"text", "language", "task", "duration", "segments", "downloads", "words", "confidence",
                           "provenance"}
    assert all(set(word) == {"start", "end", "text", "probability", "low_confidence"} for word in result["words"])


def test_sentiment_endpoint(client):
    result = client.predict("What a lovely day!", handle_file(CAT), handle_file(JFK), "product_of_experts",
                            api_name="/sentiment")
    assert set(result) == {"label", "probabilities", "method", "modalities", "contributions", "ablation",
                           "transcript", "text_backend", "notes", "image_prompts", "provenance"}
    labels = {"negative", "neutral", "positive"}
    assert result["label"] in labels and set(result["probabilities"]) == labels
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert result["method"] == "product_of_experts"
    assert [row["modality"] for row in result["modalities"]] == ["text", "image", "speech"]
    for row in result["modalities"]:
        extra = {"transcript"} if row["modality"] == "speech" else set()
        assert set(row) == {"modality", "label", "probabilities", "weight", "certainty"} | extra
    assert set(result["contributions"]) == {"text", "image", "speech"}
    assert all(set(by_class) == labels for by_class in result["contributions"].values())
    assert [item["without"] for item in result["ablation"]] == ["text", "image", "speech"]
    assert all(set(item) == {"without", "label", "probabilities"} for item in result["ablation"])
    assert isinstance(result["transcript"], str)
    assert result["text_backend"] == "cardiffnlp/twitter-roberta-base-sentiment-latest"
    assert set(result["image_prompts"]) == labels
    assert set(result["provenance"]["models"]) == {"text", "image", "speech"}


def test_models_panel_endpoints(client):
    report = client.predict("zero_shot", api_name="/preload")
    assert "openai/clip-vit-base-patch32" in [e["model"] for e in report["entries"]]
    assert report["budget_bytes"] == 4 * 1024**3
    report = client.predict("openai/clip-vit-base-patch32", api_name="/unload")
    assert "openai/clip-vit-base-patch32" not in [e["model"] for e in report["entries"]]
    report = client.predict(api_name="/models")
    assert report["evictions"] >= 1 and report["device"] == "cpu"
    assert set(report) == {"device", "dtype", "budget_bytes", "used_bytes", "hits", "misses", "evictions", "entries"}
    with pytest.raises(AppError, match="is not loaded"):
        client.predict("openai/clip-vit-base-patch32", api_name="/unload")
    report = client.predict("zero_shot", api_name="/preload")
    assert report["entries"] and all(set(entry) == ENTRY_KEYS for entry in report["entries"])


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


# ---------------------------------------------------------------- the README's "Calling the API"


def readme_api_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Calling the API", 1)[1].split("\n## ", 1)[0]


def readme_table() -> dict[str, tuple[list[tuple[str, str | None]], str]]:
    """endpoint -> ([(parameter, default or None)], result cell) from the section's table."""
    rows = {}
    for line in readme_api_section().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`/"):
            continue
        parameters = [(m.group(1), m.group(2)) for m in re.finditer(r"`(\w+)(?:=([^`]*))?`", cells[1])]
        rows[cells[0].strip("`")] = (parameters, cells[2])
    return rows


def documented_keys(endpoint: str) -> tuple[set[str], set[str]]:
    """(keys always there, keys that may be there) as the README's table says."""
    table = readme_table()
    cell = table[endpoint][1]
    if "as `/models`" in cell:
        cell = table["/models"][1]
    always = set(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", cell)))
    return always, set(re.findall(r"`(\w+)`", cell)) - always


def test_readme_documents_every_endpoint_with_its_real_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    table = readme_table()
    assert set(table) == set(api)
    for endpoint, (parameters, _) in table.items():
        real = api[endpoint]["parameters"]
        assert [name for name, _ in parameters] == [p["parameter_name"] for p in real], endpoint
        for (name, default), p in zip(parameters, real):
            if default is not None:
                assert p["parameter_has_default"] and p["parameter_default"] == ast.literal_eval(default), name


def test_readme_calls_run_and_return_the_documented_keys(url, monkeypatch):
    code = readme_api_section().split("```python\n", 1)[1].split("```", 1)[0]
    calls = dict(re.findall(r"(\w+)(?:, \w+)? = client\.predict\(.*?api_name=\"(/\w+)\"\)", code, flags=re.DOTALL))
    assert set(calls.values()) == set(readme_table()), "the example should call every endpoint"
    monkeypatch.chdir(REPO)  # the example's paths are relative to the repository
    namespace: dict = {}
    exec(compile(code.replace("http://127.0.0.1:7860/", url), "README.md", "exec"), namespace)
    for variable, endpoint in calls.items():
        if endpoint == "/flags_export":  # a file
            assert zipfile.is_zipfile(namespace[variable]), endpoint
            continue
        if endpoint == "/evaluate":  # the metrics, then the files
            assert {Path(f).name for f in namespace["files"]} >= {"metrics.json", "report.html"}
        always, maybe = documented_keys(endpoint)
        assert always <= set(namespace[variable]) <= always | maybe, endpoint
    assert set(namespace["speech"]) >= {"words"}  # the example asks for word timestamps
    for variable in ("vqa", "caption", "zero_shot", "speech", "sentiment"):
        assert set(namespace[variable]["provenance"]) >= PROVENANCE_KEYS
