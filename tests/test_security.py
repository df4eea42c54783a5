"""Nothing a visitor sends makes the server read a file it should not, load a model from outside the model
directory, or run code: file payloads, file URLs, model ids, oversized uploads, and the package's own source."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from test_bad_inputs import CAT, CLIP, JFK, VILT, one_torch_thread, serve  # noqa: F401  (autouse)

import mmdemo
from mmdemo.config import Settings, settings_from_env

PACKAGE = Path(mmdemo.__file__).resolve().parent
REPO = PACKAGE.parent
SECRET = Path("/etc/passwd")
UPLOAD_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def app(tiny_model_dir, upload_dir):
    """The app as a public Space runs it: default settings (custom model ids off), a small upload limit."""
    settings = Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu",
                        max_upload_bytes=UPLOAD_LIMIT)
    with serve(settings) as (client, runtime):
        yield client, runtime


@pytest.fixture(scope="module")
def permissive_app(tiny_model_dir, upload_dir):
    """An operator who allowed free-text model ids: the ids still cannot leave the model directory."""
    settings = Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu", allow_custom_models=True)
    with serve(settings) as (client, runtime):
        yield client, runtime


def call_raw(base: str, api_name: str, data: list) -> tuple[str, str]:
    """One request through Gradio's HTTP API with the payload exactly as given: (final event, its data)."""
    with httpx.Client(base_url=base.rstrip("/"), timeout=60) as http:
        joined = http.post(f"/gradio_api/call/{api_name}", json={"data": data})
        if joined.status_code != 200:
            return "rejected", joined.text
        event_id = joined.json()["event_id"]
        body = http.get(f"/gradio_api/call/{api_name}/{event_id}").text
    events = [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    return events[-1], payloads[-1]


def upload_raw(base: str, path: Path) -> httpx.Response:
    with httpx.Client(base_url=base.rstrip("/"), timeout=60) as http, path.open("rb") as file:
        return http.post("/gradio_api/upload", files={"files": (path.name, file)})


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


# ---------------------------------------------------------------- file payloads and the file route


def test_the_raw_call_reaches_the_model_with_an_uploaded_file(app):
    """The control for the refusals below: a file uploaded first is accepted by the same raw call."""
    client, _ = app
    uploaded = upload_raw(client.src, CAT)
    assert uploaded.status_code == 200
    event, data = call_raw(client.src, "vqa", [file_data(uploaded.json()[0]), "What animal is this?", VILT, False])
    assert event == "complete" and json.loads(data)[0]["question"] == "What animal is this?"


def outside_paths(upload_dir: Path, tiny_model_dir: Path) -> dict[str, str]:
    return {
        "system file": str(SECRET),
        "relative traversal": "../../../../../../etc/passwd",
        "upload folder then traversal": f"{upload_dir}/../../../../etc/passwd",
        "the app's own source": str(PACKAGE / "config.py"),
        "a model's weights": str(tiny_model_dir / CLIP / "model.safetensors"),
        "proc self environ": "/proc/self/environ",
    }


@pytest.mark.parametrize("where", ["system file", "relative traversal", "upload folder then traversal",
                                   "the app's own source", "a model's weights", "proc self environ"])
def test_file_payload_outside_the_upload_folder_is_refused(app, upload_dir, tiny_model_dir, where):
    client, _ = app
    path = outside_paths(upload_dir, tiny_model_dir)[where]
    before = sorted(upload_dir.rglob("*"))
    event, data = call_raw(client.src, "vqa", [file_data(path), "What is this?", VILT])
    assert event in {"error", "rejected"}, (event, data)
    assert "root:" not in data and "safetensors" not in data.lower()
    assert sorted(upload_dir.rglob("*")) == before, "the server copied the file into its cache"
    # The server still answers an honest visitor.
    assert client.predict(handle_file(str(CAT)), "What is this?", VILT, api_name="/vqa")["answers"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/gradio_api/info", "http://localhost:{port}/config",
                                 "file:///etc/passwd"])
def test_file_payload_with_a_local_url_is_not_fetched(app, url):
    client, _ = app
    port = httpx.URL(client.src).port
    event, data = call_raw(client.src, "zero_shot",
                           [file_data(url.format(port=port)), "cat, dog", CLIP, "a photo of a {}.", False])
    assert event in {"error", "rejected"}, (event, data)
    assert "named_endpoints" not in data and "root:" not in data


@pytest.mark.parametrize("route", [
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=../../../../etc/passwd",
    "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file={package}/config.py",
    "/gradio_api/file={upload_dir}/../../../../etc/passwd",
    "/file=/etc/passwd",
])
def test_file_route_serves_nothing_outside_the_upload_folder(app, upload_dir, route):
    client, _ = app
    url = client.src.rstrip("/") + route.format(package=PACKAGE, upload_dir=upload_dir)
    response = httpx.get(url, timeout=30)
    assert response.status_code in {400, 403, 404}, (response.status_code, response.text[:200])
    assert "root:" not in response.text and "max_upload_bytes" not in response.text


# ---------------------------------------------------------------- uploads


def test_upload_over_the_limit_is_refused_by_the_server(app, upload_dir, tmp_path):
    client, _ = app
    big = tmp_path / "big.png"
    big.write_bytes(CAT.read_bytes() + bytes(UPLOAD_LIMIT))  # a valid PNG with trailing bytes
    response = upload_raw(client.src, big)
    assert response.status_code == 413 and f"{UPLOAD_LIMIT}" in response.text
    assert not [p for p in upload_dir.rglob("big.png")], "the refused upload was kept"
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks first
        client.predict(handle_file(str(big)), "What is this?", VILT, api_name="/vqa")
    assert client.predict(handle_file(str(CAT)), "What is this?", VILT, api_name="/vqa")["answers"]


def test_executable_formats_are_not_decoded(app, tmp_path):
    """Pillow opens EPS through Ghostscript: an EPS uploaded as .png must be refused, not rendered."""
    client, _ = app
    eps = tmp_path / "poster.png"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(/etc/passwd) (r) file\nshowpage\n")
    with pytest.raises(AppError, match="not an image that can be read"):
        client.predict(handle_file(str(eps)), "What is this?", VILT, api_name="/vqa")
    pickled = tmp_path / "weights.wav"
    pickled.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.")
    with pytest.raises(AppError, match="not audio that can be read"):
        client.predict(handle_file(str(pickled)), "openai/whisper-tiny", "auto", "transcribe", "none",
                       api_name="/speech")


# ---------------------------------------------------------------- model ids

ESCAPING_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "openai/..",
    "openai/../../../../etc",
    "openai/clip-vit-base-patch32/../../../..",
    "./openai/clip-vit-base-patch32",
    "openai\\..\\..\\etc",
    "~/.ssh/id_rsa",
]


def test_custom_model_ids_are_off_by_default():
    assert Settings().allow_custom_models is False
    assert settings_from_env({}).allow_custom_models is False


@pytest.mark.parametrize("model_id", ESCAPING_IDS + ["evil/remote-code"])
def test_unlisted_model_ids_are_refused_by_default(app, model_id):
    client, runtime = app
    with pytest.raises(AppError, match=r"not in the list of choices|Unknown model") as info:
        client.predict(handle_file(str(CAT)), "cat, dog", model_id, "a photo of a {}.", False, api_name="/zero_shot")
    assert "\n" not in str(info.value)
    assert model_id not in [entry["model"] for entry in runtime.cache_report()["entries"]]


@pytest.mark.parametrize("model_id", ESCAPING_IDS)
def test_model_ids_cannot_escape_the_model_dir_even_when_custom_ids_are_allowed(permissive_app, model_id):
    client, runtime = permissive_app
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(CAT)), "cat, dog", model_id, "a photo of a {}.", False, api_name="/zero_shot")
    message = str(info.value)
    assert "\n" not in message
    assert ("is not a valid model id: use <org>/<name>" in message or "Unknown model" in message
            or "not available offline" in message), message
    assert "root:" not in message
    assert runtime.cache_report()["entries"] == [] or all(
        entry["model"] != model_id for entry in runtime.cache_report()["entries"])


@pytest.mark.parametrize("field", ["text_model", "image_model", "speech_model"])
def test_sentiment_model_ids_cannot_escape_the_model_dir(permissive_app, field):
    client, _ = permissive_app
    models = {"text_model": "vader", "image_model": CLIP, "speech_model": "openai/whisper-tiny"}
    models[field] = "../../../etc/passwd"
    with pytest.raises(AppError, match=r"is not a valid model id: use <org>/<name>"):
        client.predict("Lovely", handle_file(str(CAT)), handle_file(str(JFK)), "weighted_average", 1, 1, 1,
                       models["text_model"],
                       models["image_model"], models["speech_model"], "", "", "", api_name="/sentiment")


def test_unload_refuses_ids_that_are_not_resident(app):
    client, _ = app
    with pytest.raises(AppError, match="is not loaded"):
        client.predict("../../etc/passwd", api_name="/unload")


# ---------------------------------------------------------------- the package runs no code from outside


def python_sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + [REPO / "app.py"]


def test_no_trust_remote_code_anywhere():
    """No call passes trust_remote_code, no mapping names it; it appears in comments and docstrings only."""
    offenders = []
    for source in python_sources():
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                offenders.append(f"{source}:{node.value.lineno} keyword")
            elif isinstance(node, ast.Constant) and node.value == "trust_remote_code":
                offenders.append(f"{source}:{node.lineno} string")
    assert offenders == []


def test_no_dynamic_code_execution_or_unsafe_deserialisation():
    """No eval/exec/compile, no pickle or torch.load: checkpoints load from safetensors through transformers."""
    offenders = []
    for source in python_sources():
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in {"eval", "exec", "compile", "pickle.load", "pickle.loads", "torch.load", "__import__",
                            "marshal.loads", "os.system"}:
                    offenders.append(f"{source}:{node.lineno} {name}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                if any(module.split(".")[0] in {"pickle", "dill", "cloudpickle", "marshal"} for module in modules):
                    offenders.append(f"{source}:{node.lineno} imports {modules}")
    assert offenders == []
