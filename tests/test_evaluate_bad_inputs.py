"""The Evaluate tab's bad-input catalogue: hostile and careless test sets through the launched app's `/evaluate` API
and through `python -m mmdemo.evaluate` (in-process), the same case both ways.

Each case gets one actionable line (the API's AppError; the CLI's exit code 2 and one stderr line), or results whose
rows say what was wrong with each bad row while the good rows are scored. After every API case the server still
answers a normal evaluation.
"""

from __future__ import annotations

import io
import json
import re
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from test_bad_inputs import one_torch_thread, serve  # noqa: F401  (one_torch_thread is an autouse fixture)
from test_evaluate import run_cli

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.config import Settings

CLIP = "openai/clip-vit-base-patch32"
VILT = "dandelin/vilt-b32-finetuned-vqa"
WHISPER = "openai/whisper-tiny"
MAX_ITEMS = 20  # the app's and the CLI's MMDEMO_MAX_EVAL_ITEMS here
MAX_MESSAGE_CHARS = 250


def png(seed: int = 0, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def wav(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    samples = (np.sin(np.arange(int(16000 * seconds)) * 0.05) * 8000).astype("<i2")
    with wave.open(buffer, "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(16000)
        sink.writeframes(samples.tobytes())
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes | str], *, infos: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in infos:
            zf.writestr(info, data)
    return path


@dataclass(frozen=True)
class Refused:
    pattern: str  # a regex the one-line message matches


@dataclass(frozen=True)
class Answered:
    check: Callable[[dict[str, Any]], None]  # on metrics.json's content plus "rows"


@dataclass(frozen=True)
class Case:
    task: str
    models: tuple[str, ...]
    data: Path
    expect: Refused | Answered
    labels: str = ""


CASES: dict[str, Callable[[Path], Case]] = {}


def case(name: str) -> Callable[[Callable[[Path], Case]], Callable[[Path], Case]]:
    def register(build: Callable[[Path], Case]) -> Callable[[Path], Case]:
        assert name not in CASES
        CASES[name] = build
        return build

    return register


def zero_shot(tmp: Path, members: dict[str, bytes | str], expect: Refused | Answered, labels: str = "cat, dog",
              **kwargs: Any) -> Case:
    return Case("zero_shot", (CLIP,), make_zip(tmp / "set.zip", members, **kwargs), expect, labels)


def row_errors(expected: dict[str, str | None]) -> Answered:
    """The rows of these files have these errors (regexes; None: no error), the other rows none."""

    def check(data: dict[str, Any]) -> None:
        got = {row["file"]: row["error"] for row in data["rows"]}
        assert set(got) == set(expected), got
        for name, pattern in expected.items():
            if pattern is None:
                assert got[name] is None, (name, got[name])
            else:
                assert got[name] and re.search(pattern, got[name]), (name, got[name])

    return Answered(check)


# ---- the archive


@case("member path with ../")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"../../evil.png": png()}, Refused(r"^The ZIP is refused: its member '\.\./\.\./evil.png'"
                                                             r" points outside"))


@case("absolute member path")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"/tmp/evil.png": png()}, Refused(r"points outside the folder"))


@case("symlink member")
def _(tmp: Path) -> Case:
    link = zipfile.ZipInfo("cat.png")
    link.external_attr = 0o120777 << 16
    return zero_shot(tmp, {}, Refused(r"is a symbolic link"), infos=[(link, b"/etc/passwd")])


@case("encrypted ZIP")
def _(tmp: Path) -> Case:
    path = make_zip(tmp / "set.zip", {"cat.png": png()})
    # zipfile writes no encryption; set the "encrypted" flag bit in the local and central headers, as a zip tool does
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature)
        data[at + offset] |= 0x1
    path.write_bytes(bytes(data))
    return Case("zero_shot", (CLIP,), path, Refused(r"^The ZIP is encrypted \(password-protected\): zip the test set"),
                "cat, dog")


@case("zip bomb: one member expanding 1000x")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"bomb.png": b"\0" * 30_000_000}, Refused(r"expands \d+x \(a zip bomb\?\)"))


@case("more members than the cap")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {f"{i}.txt": b"" for i in range(5001)}, Refused(r"has 5001 members; the limit is 5000"))


@case("text file renamed .zip")
def _(tmp: Path) -> Case:
    path = tmp / "set.zip"
    path.write_text("not a zip at all\n" * 10)
    return Case("zero_shot", (CLIP,), path, Refused(r"not a ZIP archive"), "cat, dog")


@case("truncated ZIP")
def _(tmp: Path) -> Case:
    whole = make_zip(tmp / "whole.zip", {"a.png": png(), "b.png": png(1)}).read_bytes()
    path = tmp / "set.zip"
    path.write_bytes(whole[: len(whole) // 2])
    return Case("zero_shot", (CLIP,), path, Refused(r"not a ZIP archive|damaged"), "cat, dog")


@case("empty ZIP")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {}, Refused(r"^The upload holds no image files"))


@case("nested ZIP without a manifest is not opened")
def _(tmp: Path) -> Case:
    inner = make_zip(tmp / "inner.zip", {"hidden.png": png()}).read_bytes()

    def check(data: dict[str, Any]) -> None:
        assert [row["file"] for row in data["rows"]] == ["a.png"] and data["rows"][0]["error"] is None
        assert data["skipped_files"] == ["inner.zip"]

    return zero_shot(tmp, {"a.png": png(), "inner.zip": inner}, Answered(check))


@case("nested archive named in the manifest")
def _(tmp: Path) -> Case:
    inner = make_zip(tmp / "inner.zip", {"hidden.png": png()}).read_bytes()
    manifest = "file,label\na.png,cat\ninner.zip,cat\n"
    return zero_shot(tmp, {"a.png": png(), "inner.zip": inner, "manifest.csv": manifest},
                     row_errors({"a.png": None, "inner.zip": r"is an archive; archives inside the upload are not"}))


@case("more images than MMDEMO_MAX_EVAL_ITEMS")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {f"{i}.png": png(i, (8, 8)) for i in range(MAX_ITEMS + 1)},
                     Refused(rf"more than {MAX_ITEMS} image files; the limit is {MAX_ITEMS} \(MMDEMO_MAX_EVAL_ITEMS\)"))


# ---- the manifest


@case("manifest with 10^6 rows")
def _(tmp: Path) -> Case:
    manifest = "file,label\n" + "".join(f"img{i}.png,cat\n" for i in range(1_000_000))
    return zero_shot(tmp, {"manifest.csv": manifest},
                     Refused(rf"^manifest.csv has more than {MAX_ITEMS} rows; the limit is {MAX_ITEMS}"))


@case("manifest with an unknown column")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": "file,label,colour\na.png,cat,red\n"},
                     Refused(r"unknown column\(s\) colour for zero_shot: use file, label, labels$"))


@case("VQA manifest without the question column")
def _(tmp: Path) -> Case:
    members = {"a.png": png(), "manifest.csv": "file,answer\na.png,cat\n"}
    return Case("vqa", (VILT,), make_zip(tmp / "set.zip", members), Refused(r"lacks the column\(s\) question"))


@case("manifest in Latin-1")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": "file,label\na.png,café\n".encode("latin-1")},
                     Refused(r"^manifest.csv is not UTF-8 text \(byte \d+\): save it as UTF-8"))


@case("manifest with a byte-order mark")
def _(tmp: Path) -> Case:
    manifest = "\ufefffile,label,labels\na.png,cat,cat|dog\n".encode()
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": manifest}, row_errors({"a.png": None}))


@case("manifest with only a header")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": "file,label\n"}, Refused(r"has no rows"))


@case("CSV row with more cells than columns")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": "file,label\na.png,cat,dog,bird\n"},
                     Refused(r"line 2 has 4 cells but the header names 2 columns"))


@case("JSONL line that is not JSON")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.jsonl": '{"file": "a.png"}\n{file: a.png}\n'},
                     Refused(r"^manifest.jsonl line 2 is not JSON"))


@case("both manifest.csv and manifest.jsonl")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": "file\na.png\n", "manifest.jsonl": '{"file": "a.png"}\n'},
                     Refused(r"both manifest.csv and manifest.jsonl"))


# ---- the rows


@case("rows naming a missing file and a path outside the set")
def _(tmp: Path) -> Case:
    manifest = "file,label\na.png,cat\nghost.png,cat\n../../etc/passwd,cat\n"
    return zero_shot(tmp, {"a.png": png(), "manifest.csv": manifest},
                     row_errors({"a.png": None, "ghost.png": r"^ghost.png is not in the upload$",
                                 "../../etc/passwd": r"points outside the test set"}))


@case("unreadable image among good ones")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png(), "b.jpg": "Dear visitor, not a photo", "c.png": png(2)},
                     row_errors({"a.png": None, "b.jpg": r"^This file is not an image that can be read",
                                 "c.png": None}))


@case("damaged audio clip among good ones")
def _(tmp: Path) -> Case:
    clip = wav()
    members = {"good.wav": clip, "cut.wav": clip[:30], "manifest.csv": "file,reference\ngood.wav,hello\ncut.wav,hi\n"}
    return Case("speech", (WHISPER,), make_zip(tmp / "set.zip", members),
                row_errors({"good.wav": None, "cut.wav": r"audio|damaged|samples"}))


@case("zero-shot label not among the candidates")
def _(tmp: Path) -> Case:
    manifest = "file,label\na.png,cat\nb.png,giraffe\n"
    return zero_shot(tmp, {"a.png": png(), "b.png": png(1), "manifest.csv": manifest},
                     row_errors({"a.png": None, "b.png": r"label 'giraffe' is not among the candidate labels"}))


@case("zero-shot without any candidate labels")
def _(tmp: Path) -> Case:
    return zero_shot(tmp, {"a.png": png()}, Refused(r"^Zero-shot needs candidate labels"), labels="")


@case("sentiment label that is no sentiment")
def _(tmp: Path) -> Case:
    manifest = "text,label\nLovely day,positive\nMeh,purple\n"
    return Case("sentiment", ("vader",), make_zip(tmp / "set.zip", {"manifest.csv": manifest}),
                row_errors({"Lovely day": None, "Meh": r"label 'purple' is not one of negative, neutral, positive"}))


@case("formula injection in a manifest cell")
def _(tmp: Path) -> Case:
    manifest = 'text,label\n"=HYPERLINK(""http://evil"",""x"")",positive\n'

    def check(data: dict[str, Any]) -> None:
        assert data["rows"][0]["error"] is None
        assert data["per_model"]["vader"]["items"] == 1

    return Case("sentiment", ("vader",), make_zip(tmp / "set.zip", {"manifest.csv": manifest}), Answered(check))


# ---- the request


@case("unknown model")
def _(tmp: Path) -> Case:
    return Case("zero_shot", ("nobody/clip",), make_zip(tmp / "set.zip", {"a.png": png()}),
                Refused(r"^Unknown model 'nobody/clip' for Zero-shot classification: choose one of"), "cat, dog")


@case("five models")
def _(tmp: Path) -> Case:
    models = (CLIP, "openai/clip-vit-large-patch14", "google/siglip-base-patch16-224", "a/b", "c/d")
    return Case("zero_shot", models, make_zip(tmp / "set.zip", {"a.png": png()}),
                Refused(r"^5 models chosen; the limit is 4: remove some$"), "cat, dog")


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 20


# ---------------------------------------------------------------- through the API and the CLI


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    settings = Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu", quantize="none",
                        max_eval_items=MAX_ITEMS)
    with serve(settings) as (client, runtime):
        yield client


def api_evaluate(client: Any, bad: Case) -> dict[str, Any]:
    data, _files = client.predict(bad.task, "", handle_file(str(bad.data)), None, list(bad.models), bad.labels,
                                  None, api_name="/evaluate")
    return data


@pytest.mark.parametrize("name", list(CASES))
def test_bad_set_through_the_api(app, name, tmp_path):
    bad = CASES[name](tmp_path)
    if isinstance(bad.expect, Refused):
        with pytest.raises(AppError) as info:
            api_evaluate(app, bad)
        message = str(info.value)
        assert re.search(bad.expect.pattern, message), message
        assert "\n" not in message and len(message) <= MAX_MESSAGE_CHARS, message
    else:
        bad.expect.check(api_evaluate(app, bad))
    # ...and the server still evaluates a normal set.
    normal = Case("zero_shot", (CLIP,), make_zip(tmp_path / "normal.zip", {"ok.png": png(7)}), Refused(""), "a, b")
    assert api_evaluate(app, normal)["rows"][0]["error"] is None


@pytest.fixture
def cli_env(monkeypatch, tiny_model_dir):
    for name, value in {"MMDEMO_MODEL_DIR": str(tiny_model_dir), "MMDEMO_DEVICE": "cpu", "MMDEMO_QUANTIZE": "none",
                        "MMDEMO_MEMORY_BUDGET": "4GiB", "MMDEMO_MAX_EVAL_ITEMS": str(MAX_ITEMS)}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_set_through_the_cli(cli_env, name, tmp_path, capsys):
    bad = CASES[name](tmp_path)
    out = tmp_path / "out"
    code = run_cli(["--task", bad.task, "--models", ",".join(bad.models), "--labels", bad.labels, str(bad.data),
                    "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    if isinstance(bad.expect, Refused):
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert re.search(bad.expect.pattern, err.removeprefix("error: ").rstrip("\n")), err
        assert not out.exists() or not any(out.iterdir())
    else:
        assert code == 0, err
        data = json.loads((out / "metrics.json").read_text())
        data["rows"] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        bad.expect.check(data)
        if name == "formula injection in a manifest cell":
            assert "'=HYPERLINK" in (out / "results.csv").read_text()
