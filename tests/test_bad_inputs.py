"""The bad-input catalogue: hostile and careless uploads through the launched app, driven with gradio_client.

Every case gets a one-line actionable error, or (where the input is merely unusual) the same result as the
clean equivalent computed in-process; after every case the next normal request on that endpoint still succeeds.
Results are compared with independently built references (an image composited on white by hand, a rotation
applied by Pillow, a 16-bit clip written as 24-bit), not with our own earlier output.

Also home of what the other reliability suites (load, faults, security) share: `serve` (the app as `app.py`
launches it, on a free local port), `assert_same_result`, `without_timing` and the `one_torch_thread` fixture.
"""

from __future__ import annotations

import io
import math
import re
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import soundfile
import soxr
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw, ImageOps

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import LIMITS, Settings, env_var, settings_from_env
from mmdemo.runtime import Runtime
from mmdemo.testing.servers import free_port
from mmdemo.ui import launch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = ASSETS / "skimage_chelsea.png"
JFK = ASSETS / "jfk.flac"

CLIP = "openai/clip-vit-base-patch32"
VILT = "dandelin/vilt-b32-finetuned-vqa"
BLIP_CAPTION = "Salesforce/blip-image-captioning-base"
WHISPER = "openai/whisper-tiny"
TEMPLATE = "a photo of a {}."
LABELS = "cat, dog, bird"
CLIP_SPEECH_SECONDS = 4.0  # the speech cases use the first seconds of jfk.flac
MAX_MESSAGE_CHARS = 250


# ---------------------------------------------------------------- shared helpers (also used by the other suites)


@contextmanager
def serve(settings: Settings, runtime: Runtime | None = None) -> Iterator[tuple[Client, Runtime]]:
    """The app launched by `mmdemo.ui.launch` (the upload limit and queue included) on a free 127.0.0.1 port."""
    settings = replace(settings, host="127.0.0.1", port=free_port())
    runtime = runtime or local_runtime(settings)
    demo = launch(settings, runtime=runtime, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{settings.port}/", verbose=False), runtime
    finally:
        demo.close()


@contextmanager
def peak_rss_growth(interval: float = 0.005) -> Iterator[Callable[[], int]]:
    """Sample this process's RSS while the block runs; the yielded function gives the peak growth in bytes."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: peak[0] - start
    finally:
        done.set()
        thread.join()


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    """A result minus what legitimately varies between two runs of a request: of its provenance (milliseconds,
    the batch it shared, ...) only the models are kept."""
    result = dict(result)
    result["provenance"] = {"models": result.get("provenance", {}).get("models")}
    return result


def assert_same_result(got: Any, want: Any, path: str = "result") -> None:
    """Equal structure and strings; floats equal to 1e-4 (thread scheduling changes the last bits)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same_result(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same_result(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-4), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread per inference: tiny models gain nothing from more, and on two cores shared with other
    work OpenMP's spinning threads made each request 10-25 times slower (measured: 282 ms -> 11 ms for a tiny
    RoBERTa). Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- building hostile files


def png_stream(path: Path, width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2,
               rows: int | None = None) -> Path:
    """A PNG of zero pixels written row by row, so a 12000x9000 file costs kilobytes to make.

    rows: how many rows of image data to actually write (fewer than height makes a bomb that only declares
    its size); colour_type 2 is RGB, 0 greyscale.
    """
    channels = {0: 1, 2: 3}[colour_type]
    row = b"\0" + bytes(math.ceil(width * channels * bit_depth / 8))
    compressor = zlib.compressobj()
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows))
    data += compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def picture(width: int = 96, height: int = 64) -> Image.Image:
    """An asymmetric colour picture: a rotation or a lost alpha channel changes what a model sees."""
    image = Image.new("RGB", (width, height), (40, 90, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 3, height // 2), fill=(230, 30, 30))
    draw.ellipse((width // 2, height // 3, width - 4, height - 4), fill=(250, 220, 40))
    return image


def speech_samples() -> tuple[np.ndarray, int]:
    """The first seconds of jfk.flac's first channel as int16, and its rate."""
    rate = soundfile.info(JFK).samplerate
    samples, _ = soundfile.read(JFK, dtype="int16", frames=int(CLIP_SPEECH_SECONDS * rate), always_2d=True)
    return np.ascontiguousarray(samples[:, 0]), rate


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- the launched app


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    # fp32 everywhere: the cases compare answers with in-process runs to 1e-4, and a bf16 model's last bits move
    # with the thread layout (the CPU formats are tested in test_tasks).
    settings = Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu", quantize="none")
    with serve(settings) as (client, runtime):
        yield client, runtime


def zero_shot_args(image: Path | None, labels: str = LABELS, template: str = TEMPLATE) -> tuple:
    return (handle_file(str(image)) if image else None, labels, CLIP, template, False)


def vqa_args(image: Path | None, question: str = "What is this?") -> tuple:
    return (handle_file(str(image)) if image else None, question, VILT)


def caption_args(image: Path | None, prefix: str = "") -> tuple:
    return (handle_file(str(image)) if image else None, prefix, BLIP_CAPTION, "beam", 2, 0.9, 1.0, 0, 8, 1)


def speech_args(audio: Path | None) -> tuple:
    return (handle_file(str(audio)) if audio else None, WHISPER, "auto", "transcribe", "none")


def sentiment_args(text: str | None = "", image: Path | None = None, audio: Path | None = None) -> tuple:
    return (text, handle_file(str(image)) if image else None, handle_file(str(audio)) if audio else None,
            "weighted_average", 1, 1, 1, "vader", CLIP, WHISPER, "", "", "")


def zero_shot_raw(image: Any, labels: str = LABELS) -> dict[str, Any]:
    return {"image": image, "labels": labels, "model": CLIP, "template": TEMPLATE, "ensemble": False}


def speech_raw(audio: Any) -> dict[str, Any]:
    return {"audio": audio, "model": WHISPER, "language": "auto", "task": "transcribe", "timestamps": "none"}


NORMAL = {
    "/zero_shot": lambda: zero_shot_args(CAT),
    "/vqa": lambda: vqa_args(CAT, "What animal is this?"),
    "/captioning": lambda: caption_args(CAT),
    "/speech": lambda: speech_args(JFK),
    "/sentiment": lambda: sentiment_args("What a lovely day"),
}


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Refused:
    """The request fails with one actionable line matching `pattern` (a regex)."""

    pattern: str


@dataclass(frozen=True)
class Answered:
    """The request succeeds; `check(result, runtime)` compares it with its reference."""

    check: Callable[[dict[str, Any], Runtime], None]


def same_as_in_process(task: str, raw: dict[str, Any]) -> Answered:
    """The API result equals Runtime.run on `raw` (a clean equivalent of the upload, built independently)."""

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        assert_same_result(without_timing(result), without_timing(runtime.run(task, raw)))

    return Answered(check)


@dataclass(frozen=True)
class Case:
    api: str
    args: tuple
    expect: Refused | Answered


CaseBuilder = Callable[[Path], Case]
CASES: dict[str, CaseBuilder] = {}


def case(name: str) -> Callable[[CaseBuilder], CaseBuilder]:
    def register(build: CaseBuilder) -> CaseBuilder:
        assert name not in CASES
        CASES[name] = build
        return build

    return register


# ---- images


@case("truncated PNG")
def _(tmp: Path) -> Case:
    path = tmp / "cut.png"
    buffer = io.BytesIO()
    picture(400, 300).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return Case("/zero_shot", zero_shot_args(path), Refused(r"^This image file is damaged or incomplete: upload"))


def truncated_image(path: Path, fmt: str, keep: int, size: tuple[int, int] = (400, 300)) -> Path:
    """A picture saved as `fmt` and cut after `keep` bytes, as an interrupted upload leaves it."""
    buffer = io.BytesIO()
    picture(*size).save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[:keep])
    return path


@case("truncated JPEG")
def _(tmp: Path) -> Case:
    path = truncated_image(tmp / "cut.jpg", "JPEG", 600)
    return Case("/vqa", vqa_args(path), Refused(r"damaged or incomplete: upload it again"))


@case("text file renamed .jpg")
def _(tmp: Path) -> Case:
    path = tmp / "holiday.jpg"
    path.write_text("Dear visitor, this is not a photo.\n" * 20)
    return Case("/vqa", vqa_args(path), Refused(r"^This file is not an image that can be read: upload a PNG"))


@case("HTML renamed .png")
def _(tmp: Path) -> Case:
    path = tmp / "page.png"
    path.write_text("<html><script>alert('x')</script></html>")
    return Case("/captioning", caption_args(path), Refused(r"not an image that can be read"))


@case("SVG image")
def _(tmp: Path) -> Case:
    path = tmp / "drawing.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/>'
                    "</svg>")
    return Case("/zero_shot", zero_shot_args(path), Refused(r"not an image that can be read: upload a PNG"))


@case("zero-byte image")
def _(tmp: Path) -> Case:
    path = tmp / "empty.png"
    path.write_bytes(b"")
    return Case("/zero_shot", zero_shot_args(path), Refused(r"^This image file is empty \(0 bytes\): upload it again"))


@case("decompression bomb declaring 100000x100000")
def _(tmp: Path) -> Case:
    path = png_stream(tmp / "bomb.png", 100_000, 100_000, bit_depth=1, colour_type=0, rows=4)
    assert path.stat().st_size < 1_000
    return Case("/zero_shot", zero_shot_args(path),
                Refused(r"^Image is 10,000 megapixels; the limit is 40 megapixels: resize it and upload again$"))


@case("decompression bomb 9000x8000 of 1-bit zeros")
def _(tmp: Path) -> Case:
    # Under Pillow's own bomb threshold (89 Mpx) and over ours (40 Mpx): 9 KB that decodes to 216 MB of RGB.
    path = png_stream(tmp / "bomb.png", 9000, 8000, bit_depth=1, colour_type=0)
    assert path.stat().st_size < 20_000
    return Case("/zero_shot", zero_shot_args(path),
                Refused(r"^Image is 9000x8000 pixels \(72 megapixels\); the limit is 40 megapixels: resize it"))


@case("12000x9000 image")
def _(tmp: Path) -> Case:
    path = png_stream(tmp / "huge.png", 12_000, 9_000)
    return Case("/vqa", vqa_args(path),
                Refused(r"^Image is (12000x9000 pixels \()?108 megapixels\)?; the limit is 40 megapixels: resize it"))


@case("4800x3200 JPEG is downscaled")
def _(tmp: Path) -> Case:
    path = tmp / "big.jpg"
    big = picture(4800, 3200)
    big.save(path, quality=90)
    reference = ImageOps.contain(big, (4096, 4096), Image.Resampling.LANCZOS)

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        want = runtime.run("zero_shot", zero_shot_raw(np.asarray(reference)))
        assert [x["label"] for x in result["labels"]] == [x["label"] for x in want["labels"]]
        for got, ref in zip(result["labels"], want["labels"]):
            assert got["score"] == pytest.approx(ref["score"], abs=0.02)  # JPEG and draft decoding blur a little

    return Case("/zero_shot", zero_shot_args(path), Answered(check))


@case("1x1 image")
def _(tmp: Path) -> Case:
    path = tmp / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(path)
    return Case("/zero_shot", zero_shot_args(path),
                same_as_in_process("zero_shot", zero_shot_raw(np.full((1, 1, 3), (200, 10, 10), np.uint8))))


@case("RGBA transparent over black")
def _(tmp: Path) -> Case:
    path = tmp / "alpha.png"
    rgba = np.zeros((64, 96, 4), np.uint8)  # black and fully transparent...
    rgba[:, 48:] = (30, 160, 60, 255)  # ...except an opaque green right half
    Image.fromarray(rgba, "RGBA").save(path)
    on_white = np.where(rgba[..., 3:] == 255, rgba[..., :3], 255).astype(np.uint8)
    return Case("/zero_shot", zero_shot_args(path), same_as_in_process("zero_shot", zero_shot_raw(on_white)))


@case("palette PNG")
def _(tmp: Path) -> Case:
    path = tmp / "palette.png"
    image = picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.save(path)
    return Case("/zero_shot", zero_shot_args(path), same_as_in_process("zero_shot", zero_shot_raw(rgb_array(image))))


@case("palette GIF with a transparent colour")
def _(tmp: Path) -> Case:
    path = tmp / "transparent.gif"
    indices = np.zeros((64, 96), np.uint8)
    indices[:, 48:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)
    image.save(path, transparency=0)
    on_white = np.where(indices[..., None] == 0, 255, np.array([200, 40, 40], np.uint8)).astype(np.uint8)
    return Case("/zero_shot", zero_shot_args(path), same_as_in_process("zero_shot", zero_shot_raw(on_white)))


@case("greyscale PNG")
def _(tmp: Path) -> Case:
    path = tmp / "grey.png"
    grey = picture().convert("L")
    grey.save(path)
    return Case("/zero_shot", zero_shot_args(path), same_as_in_process("zero_shot", zero_shot_raw(rgb_array(grey))))


@case("CMYK JPEG")
def _(tmp: Path) -> Case:
    path = tmp / "cmyk.jpg"
    picture().convert("CMYK").save(path, quality=95)
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
        reference = rgb_array(stored)
    return Case("/zero_shot", zero_shot_args(path), same_as_in_process("zero_shot", zero_shot_raw(reference)))


@case("16-bit greyscale PNG")
def _(tmp: Path) -> Case:
    path = tmp / "deep.png"
    ramp = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (64, 1))
    ramp[:20, :30] = 65535
    Image.fromarray(ramp).save(path)  # mode I;16
    scaled = np.rint(ramp / 257).astype(np.uint8)  # 16 -> 8 bits by scaling, not clipping
    return Case("/zero_shot", zero_shot_args(path),
                same_as_in_process("zero_shot", zero_shot_raw(np.stack([scaled] * 3, axis=-1))))


@case("animated GIF")
def _(tmp: Path) -> Case:
    path = tmp / "anim.gif"
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((220, 30, 30), (30, 220, 30), (30, 30, 220))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return Case("/zero_shot", zero_shot_args(path),
                same_as_in_process("zero_shot", zero_shot_raw(np.full((64, 64, 3), (220, 30, 30), np.uint8))))


@case("EXIF-rotated JPEG")
def _(tmp: Path) -> Case:
    path = tmp / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; viewers rotate 90 degrees clockwise
    picture(96, 64).save(path, quality=95, exif=exif)
    with Image.open(path) as stored:
        as_stored = rgb_array(stored)
        upright = rgb_array(ImageOps.exif_transpose(stored))
    assert upright.shape == (96, 64, 3)

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        want = runtime.run("zero_shot", zero_shot_raw(upright))
        assert_same_result(without_timing(result), without_timing(want))
        sideways = runtime.run("zero_shot", zero_shot_raw(as_stored))
        assert [x["score"] for x in want["labels"]] != [x["score"] for x in sideways["labels"]]

    return Case("/zero_shot", zero_shot_args(path), Answered(check))


@case("WebP, lossless")
def _(tmp: Path) -> Case:
    path = tmp / "picture.webp"
    picture().save(path, lossless=True)
    return Case("/zero_shot", zero_shot_args(path),
                same_as_in_process("zero_shot", zero_shot_raw(rgb_array(picture()))))


@case("image for the sentiment tab that is a text file")
def _(tmp: Path) -> Case:
    path = tmp / "selfie.png"
    path.write_text("not a selfie")
    return Case("/sentiment", sentiment_args("Nice", image=path), Refused(r"not an image that can be read"))


# ---- text


@case("empty question")
def _(tmp: Path) -> Case:
    return Case("/vqa", vqa_args(CAT, ""), Refused(r"^Question is empty: type one$"))


@case("whitespace question")
def _(tmp: Path) -> Case:
    return Case("/vqa", vqa_args(CAT, " \t\n  \u3000 "), Refused(r"^Question is empty: type one$"))


@case("10,000-character question")
def _(tmp: Path) -> Case:
    return Case("/vqa", vqa_args(CAT, "why " * 2500),
                Refused(r"^Question is 9999 characters long; the limit is 2000: shorten it$"))


@case("question in other scripts with emoji")
def _(tmp: Path) -> Case:
    question = "这是什么动物？ Что это? 🐱🐶 ما هذا"

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        assert result["question"] == question
        want = runtime.run("vqa", {"image": str(CAT), "question": question, "model": VILT})
        assert_same_result(without_timing(result), without_timing(want))

    return Case("/vqa", vqa_args(CAT, question), Answered(check))


@case("10,000-character caption prefix")
def _(tmp: Path) -> Case:
    return Case("/captioning", caption_args(CAT, "a" * 10_000), Refused(r"^Prefix is 10000 characters long"))


# ---- labels


def labels_case(labels: str, expect: Refused | Answered) -> CaseBuilder:
    return lambda tmp: Case("/zero_shot", zero_shot_args(CAT, labels), expect)


def ranked_labels(*expected: str) -> Answered:
    """The result ranks exactly these labels (in any order), scores summing to 1 (CLIP's softmax)."""

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        assert sorted(x["label"] for x in result["labels"]) == sorted(expected)
        assert sum(x["score"] for x in result["labels"]) == pytest.approx(1.0, abs=1e-4)

    return Answered(check)


TOO_FEW_LABELS = r"^Give at least 2 different labels, separated by commas or new lines$"
case("no labels")(labels_case("", Refused(TOO_FEW_LABELS)))
case("one label")(labels_case("cat", Refused(TOO_FEW_LABELS)))
case("only commas")(labels_case(" , ,,\n, ,", Refused(TOO_FEW_LABELS)))
case("duplicate labels only")(labels_case("cat, Cat, CAT ,cat", Refused(TOO_FEW_LABELS)))
case("200 labels")(labels_case(", ".join(f"thing {i}" for i in range(200)),
                               Refused(r"^200 labels given; the limit is 50: remove some$")))
case("duplicates are dropped")(labels_case("cat, dog, Cat, dog , DOG, bird", ranked_labels("cat", "dog", "bird")))
case("emoji labels")(labels_case("🐱, 🐶, 🦜", ranked_labels("🐱", "🐶", "🦜")))
case("non-Latin labels")(labels_case("猫, собака, قطة, कुत्ता", ranked_labels("猫", "собака", "قطة", "कुत्ता")))
case("label over 100 characters")(labels_case("cat, " + "x" * 150, Refused(r"is longer than 100 characters: shorten")))


@case("template without {}")
def _(tmp: Path) -> Case:
    return Case("/zero_shot", zero_shot_args(CAT, template="a photo"), Refused(r"must contain \{\} exactly once"))


# ---- audio


def wav(tmp: Path, name: str, samples: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    path = tmp / name
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def same_transcript_as_16_bit() -> Answered:
    """The result equals the one for the plain 16 kHz, 16-bit mono clip (the content is the same samples)."""

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        samples, rate = speech_samples()
        want = runtime.run("speech", speech_raw((rate, samples)))
        assert_same_result(without_timing(result), without_timing(want))

    return Answered(check)


def transcribed(duration: float) -> Answered:
    """The request succeeds with a transcript of a clip of `duration` seconds."""

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        assert isinstance(result["text"], str)
        assert result["duration"] == pytest.approx(duration, abs=0.01)

    return Answered(check)


@case("zero-length WAV")
def _(tmp: Path) -> Case:
    return Case("/speech", speech_args(wav(tmp, "none.wav", np.zeros(0, np.int16), 16_000)),
                Refused(r"^Audio has no samples: record again or upload a longer clip$"))


@case("zero-byte WAV")
def _(tmp: Path) -> Case:
    path = tmp / "empty.wav"
    path.write_bytes(b"")
    return Case("/speech", speech_args(path), Refused(r"^This audio file is empty \(0 bytes\): record again"))


@case("all-zero samples")
def _(tmp: Path) -> Case:
    return Case("/speech", speech_args(wav(tmp, "zeros.wav", np.zeros(32_000, np.int16), 16_000)),
                Refused(r"^Audio is silent: record again or upload a clip with speech$"))


@case("NaN samples")
def _(tmp: Path) -> Case:
    samples = np.full(16_000, 0.1, np.float32)
    samples[1000:1010] = np.nan
    return Case("/speech", speech_args(wav(tmp, "nan.wav", samples, 16_000, "FLOAT")),
                Refused(r"^Audio contains invalid samples \(NaN or infinity\): export it again"))


@case("infinite samples")
def _(tmp: Path) -> Case:
    samples = np.full(16_000, 0.1, np.float32)
    samples[500] = np.inf
    return Case("/speech", speech_args(wav(tmp, "inf.wav", samples, 16_000, "FLOAT")),
                Refused(r"^Audio contains invalid samples \(NaN or infinity\)"))


@case("clipped full-scale noise")
def _(tmp: Path) -> Case:
    noise = np.where(np.random.default_rng(0).random(48_000) < 0.5, -32768, 32767).astype(np.int16)
    return Case("/speech", speech_args(wav(tmp, "noise.wav", noise, 16_000)), transcribed(3.0))


@case("8 kHz")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    low = soxr.resample(samples.astype(np.float32) / 32768, rate, 8_000)
    return Case("/speech", speech_args(wav(tmp, "8k.wav", low, 8_000, "PCM_16")), transcribed(CLIP_SPEECH_SECONDS))


@case("48 kHz")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    high = soxr.resample(samples.astype(np.float32) / 32768, rate, 48_000)
    return Case("/speech", speech_args(wav(tmp, "48k.wav", high, 48_000, "PCM_16")),
                transcribed(CLIP_SPEECH_SECONDS))


@case("8-bit WAV")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    return Case("/speech", speech_args(wav(tmp, "u8.wav", samples, rate, "PCM_U8")), transcribed(CLIP_SPEECH_SECONDS))


@case("24-bit WAV")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    return Case("/speech", speech_args(wav(tmp, "s24.wav", samples, rate, "PCM_24")), same_transcript_as_16_bit())


@case("32-bit float WAV")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    floats = samples.astype(np.float32) / 32768
    return Case("/speech", speech_args(wav(tmp, "f32.wav", floats, rate, "FLOAT")), same_transcript_as_16_bit())


@case("6-channel WAV")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    return Case("/speech", speech_args(wav(tmp, "surround.wav", np.stack([samples] * 6, axis=1), rate)),
                same_transcript_as_16_bit())


@case("9-channel WAV")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    return Case("/speech", speech_args(wav(tmp, "nine.wav", np.stack([samples] * 9, axis=1), rate)),
                Refused(r"^Audio has 9 channels; at most 8 are supported: mix it down"))


@case("8 channels at 384 kHz")
def _(tmp: Path) -> Case:
    # One second here; ten minutes of it (the duration limit) would be a few MB of FLAC and minutes of decoding.
    path = tmp / "studio.flac"
    soundfile.write(path, np.zeros((384_000, 8), np.int16), 384_000)
    return Case("/speech", speech_args(path),
                Refused(r"^Audio has 8 channels at 384,000 Hz, far more than speech needs: export it as mono"))


@case("text file renamed .wav")
def _(tmp: Path) -> Case:
    path = tmp / "voice.wav"
    path.write_text("RIFF? no, just words.\n" * 50)
    return Case("/speech", speech_args(path), Refused(r"^This file is not audio that can be read: upload a WAV"))


@case("3-hour recording")
def _(tmp: Path) -> Case:
    path = tmp / "meeting.flac"
    with soundfile.SoundFile(path, "w", samplerate=8_000, channels=1, subtype="PCM_16") as file:
        minute = np.zeros(8_000 * 60, np.int16)  # a silent meeting: FLAC keeps 3 hours of it in kilobytes
        for _ in range(180):
            file.write(minute)
    return Case("/speech", speech_args(path),
                Refused(r"^Audio is 3 h 0 min long; the limit is 10 min: trim it$"))


@case("MP3 with a corrupt frame")
def _(tmp: Path) -> Case:
    samples, rate = speech_samples()
    path = tmp / "damaged.mp3"
    soundfile.write(path, samples, rate, format="MP3")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = b"\xff\x00" * 150  # a run of false sync words and garbage
    path.write_bytes(bytes(data))

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        assert isinstance(result["text"], str)
        assert 0 < result["duration"] <= CLIP_SPEECH_SECONDS + 0.2

    # Decoders resync after a damaged frame; refusing the file is acceptable too.
    return Case("/speech", speech_args(path), Answered(check) if _mp3_decodes(path) else Refused("damaged"))


def _mp3_decodes(path: Path) -> bool:
    try:
        soundfile.read(path)
    except soundfile.SoundFileError:
        return False
    return True


# ---- sentiment


@case("sentiment with every input empty")
def _(tmp: Path) -> Case:
    return Case("/sentiment", sentiment_args("", None, None),
                Refused(r"^Give a text, an image or a recording \(any combination\)$"))


@case("sentiment with only whitespace text")
def _(tmp: Path) -> Case:
    return Case("/sentiment", sentiment_args("  \n\t ", None, None), Refused(r"^Give a text, an image or a recording"))


@case("sentiment with a silent recording")
def _(tmp: Path) -> Case:
    return Case("/sentiment", sentiment_args("", None, wav(tmp, "quiet.wav", np.zeros(16_000, np.int16), 16_000)),
                Refused(r"^Audio is silent"))


# ---- compare and flags

SIGLIP = "google/siglip-base-patch16-224"
VQA_MODELS = ["dandelin/vilt-b32-finetuned-vqa", "Salesforce/blip-vqa-base", "Salesforce/blip-vqa-capfilt-large"]


def compare_args(models: Any, options: Any = None, image: Path | None = CAT, task: str = "vqa") -> tuple:
    options = {"question": "What is this?"} if options is None else options
    return (task, models, options, handle_file(str(image)) if image else None, None)


def flag_args(note: str = "", rating: str = "down", results: Any = None, best: str = "") -> tuple:
    results = results if results is not None else {
        "question": "What is this?", "answer": "cat", "answers": [{"answer": "cat", "score": 0.9}],
        "provenance": {"models": {"model": VILT}, "ms": 3.0}}
    return ("vqa", rating, note, "", best, results, {"question": "What is this?", "model": VILT}, handle_file(str(CAT)),
            None)


def flags_args(task: str = "", model: str = "", rating: str = "", since: str = "", until: str = "") -> tuple:
    return (task, model, rating, since, until)


NORMAL["/compare"] = lambda: compare_args([CLIP, SIGLIP], {"labels": LABELS}, task="zero_shot")
NORMAL["/flag"] = lambda: flag_args("a normal note")
NORMAL["/flags"] = lambda: flags_args("vqa")
NORMAL["/flags_export"] = lambda: flags_args("vqa")


def stored_note(note: str) -> Answered:
    """The flag is stored with its note exactly as typed (the UI shows notes as text, never as HTML)."""

    def check(result: dict[str, Any], runtime: Runtime) -> None:
        from mmdemo.flags import open_store

        record = open_store(runtime.settings).get(result["id"])
        assert record["note"] == note and record["rating"] == "down"

    return Answered(check)


def checked_result(check: Callable[[dict[str, Any]], None]) -> Answered:
    return Answered(lambda result, runtime: check(result))


@case("compare with one model")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args([VILT]), Refused(r"^Pick at least 2 models to compare \(got 1\)$"))


@case("compare with five models")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args([*VQA_MODELS, "a/b", "c/d"]), Refused(r"^Pick at most 4 models to compare"))


@case("compare with the same model twice")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args([VILT, VILT]), Refused(r"is picked twice: pick different models"))


@case("compare with an unknown model")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args([VILT, "evil/../../etc/passwd"]), Refused(r"^Unknown model 'evil/"))


@case("compare with models that are not a list")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args({"a": 1}), Refused(r"^Models must be a list of 2 to 4 model ids$"))


@case("compare of an unknown task")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args([VILT, CLIP], task="__import__('os')"), Refused(r"^Unknown task "))


@case("compare with options that are a list")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args(VQA_MODELS[:2], ["question"]), Refused(r"^Options must be a JSON object"))


@case("compare with an unknown option")
def _(tmp: Path) -> Case:
    return Case("/compare", compare_args(VQA_MODELS[:2], {"question": "q", "__class__": 1}),
                Refused(r"^Unknown option '__class__' for vqa"))


@case("compare with a damaged image")
def _(tmp: Path) -> Case:
    path = truncated_image(tmp / "cut.png", "PNG", 200, (300, 200))
    return Case("/compare", compare_args(VQA_MODELS[:2], image=path), Refused(r"damaged or incomplete"))


@case("compare of every VQA model, two of them without scores")
def _(tmp: Path) -> Case:
    def check(result: dict[str, Any]) -> None:
        assert [r["model"] for r in result["results"]] == VQA_MODELS
        assert all(r["result"]["question"] == "What is this?" for r in result["results"])

    return Case("/compare", compare_args(VQA_MODELS), checked_result(check))


@case("flag with a 1 MB note")
def _(tmp: Path) -> Case:
    return Case("/flag", flag_args("x" * 1_000_000), Refused(r"^Note is 1000000 characters long; the limit is 2000"))


@case("flag with HTML and script in its note")
def _(tmp: Path) -> Case:
    note = '<img src=x onerror="alert(1)"><script>fetch("/etc/passwd")</script>'
    return Case("/flag", flag_args(note), stored_note(note))


@case("flag with a forged result")
def _(tmp: Path) -> Case:
    return Case("/flag", flag_args(results=["not", "a", "result"]), Refused(r"^Results must be what /compare"))


@case("flag with a made-up rating")
def _(tmp: Path) -> Case:
    return Case("/flag", flag_args(rating="5 stars"), Refused(r"^Rating must be one of up, down, got '5 stars'$"))


@case("flag naming a best model that was not compared")
def _(tmp: Path) -> Case:
    return Case("/flag", flag_args(best="other/model"), Refused(r"^The best model 'other/model' is not one of"))


@case("flags since a date that is not a date")
def _(tmp: Path) -> Case:
    return Case("/flags", flags_args(since="'; DROP TABLE flags; --"), Refused(r"^Since must be a date as YYYY-MM-DD"))


@case("flags of a task named like a path")
def _(tmp: Path) -> Case:
    return Case("/flags", flags_args(task="../../etc/passwd"), checked_result(lambda r: r == {"flags": []}))


@case("export of zero flags")
def _(tmp: Path) -> Case:
    return Case("/flags_export", flags_args(task="speech", since="2999-01-01"), Refused(r"^No flags to export"))


@case("export asking for a path outside the store")
def _(tmp: Path) -> Case:
    return Case("/flags_export", flags_args(task="/etc/passwd", model="../../../../etc/shadow"),
                Refused(r"^No flags to export"))


# Inputs that would take hundreds of MB (or minutes) if decoded before their declared size is checked.
MUST_STAY_SMALL = {
    "decompression bomb declaring 100000x100000": 0,
    "decompression bomb 9000x8000 of 1-bit zeros": 216,  # MB as RGB
    "12000x9000 image": 324,
    "3-hour recording": 690,  # as 16 kHz float32
}


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 40


def test_every_limit_is_a_documented_setting_with_a_safe_default():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    defaults = Settings()
    for name in LIMITS:
        variable = env_var(name)
        assert f"| `{variable}` |" in readme, f"{variable} is missing from docs/settings.md"
        assert getattr(defaults, name) > 0
        with pytest.raises(ValueError, match=variable):
            settings_from_env({variable: "0"})
    assert defaults.max_upload_bytes == 100_000_000 and defaults.max_queue == 64


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(app, name, tmp_path):
    client, runtime = app
    bad = CASES[name](tmp_path)
    started = time.perf_counter()
    with peak_rss_growth() as growth:
        if isinstance(bad.expect, Refused):
            with pytest.raises(AppError) as info:
                client.predict(*bad.args, api_name=bad.api)
            message = str(info.value)
            assert re.search(bad.expect.pattern, message), message
            assert "\n" not in message and len(message) <= MAX_MESSAGE_CHARS, message
        else:
            bad.expect.check(client.predict(*bad.args, api_name=bad.api), runtime)
    seconds = time.perf_counter() - started
    if name in MUST_STAY_SMALL:  # refused from the header, before a big buffer or a long decode
        assert growth() < 60 * 1024**2, f"{name}: memory grew by {growth() / 1e6:.0f} MB"
        assert seconds < 10, f"{name} took {seconds:.1f} s: was it decoded before its size was checked?"
    # ...and the server still answers a normal request on the same endpoint.
    if bad.api == "/flags_export":  # something to export
        client.predict(*flag_args("flagged so that the next export has a row"), api_name="/flag")
    result = client.predict(*NORMAL[bad.api](), api_name=bad.api)
    if bad.api == "/flags_export":
        assert zipfile.is_zipfile(result)
    else:  # a task's result, a compare, a stored flag, a list of flags
        assert {"provenance", "results", "id", "flags"} & set(result)
