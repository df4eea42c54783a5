"""Uploads to clean inputs: real media from ../shared/media and crafted edge cases made in tmp_path."""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from PIL import Image, JpegImagePlugin

from mmdemo import media
from mmdemo.errors import InputError
from mmdemo.media import DECODE_SIDE, AudioClip, describe_duration, load_audio, load_image

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
IMAGES = SHARED_MEDIA / "images"
AUDIO = SHARED_MEDIA / "audio"

needs_shared_media = pytest.mark.skipif(not SHARED_MEDIA.is_dir(), reason=f"{SHARED_MEDIA} not available")

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---------------------------------------------------------------- helpers


def user_message(excinfo: pytest.ExceptionInfo) -> str:
    """The InputError text, checked to be the single line a visitor is shown."""
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def fds_open_on(path: Path) -> list[str]:
    """This process's file descriptors that point at path."""
    fd_dir = Path("/proc/self/fd")
    targets = []
    for fd in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(fd_dir / fd))
        except OSError:
            pass
    return [t for t in targets if t == str(path.resolve())]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def close_to(color: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(color, expected))


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte 1-bit PNG whose header claims width x height (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def tone(rate: int, seconds: float, frequency: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float64)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def soundfile_cannot_read(*args: object, **kwargs: object) -> None:
    """Stands in for soundfile.info on a format libsndfile does not know (AAC, M4A)."""
    raise soundfile.SoundFileError("format not supported")


def sparse_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """An 8-bit WAV declaring `seconds` of audio, written as a sparse file: no disk or memory used."""
    frames = int(seconds * rate)
    header = (
        b"RIFF" + struct.pack("<I", 36 + frames) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
        + b"data" + struct.pack("<I", frames)
    )
    with path.open("wb") as file:
        file.write(header)
        file.truncate(len(header) + frames)
    return path


# ---------------------------------------------------------------- images: real files


@needs_shared_media
def test_greyscale_png_becomes_rgb_with_equal_channels():
    with Image.open(IMAGES / "skimage_camera.png") as opened:
        original = pixels(opened)
    image = load_image(IMAGES / "skimage_camera.png")
    assert image.mode == "RGB" and image.size == (512, 512)
    rgb = pixels(image)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], original)


@needs_shared_media
@pytest.mark.parametrize(("name", "has_clear_pixels"), [("CLIP.png", True), ("skimage_horse.png", False)])
def test_rgba_png_is_composited_on_white(name, has_clear_pixels):
    with Image.open(IMAGES / name) as opened:
        original = pixels(opened).astype(np.float64)
    assert original.shape[2] == 4
    rgb = pixels(load_image(str(IMAGES / name)))
    assert rgb.shape == original.shape[:2] + (3,)
    alpha = original[:, :, 3:] / 255
    expected = original[:, :, :3] * alpha + 255 * (1 - alpha)
    assert np.abs(rgb - expected).max() <= 1
    assert bool((alpha == 0).any()) == has_clear_pixels
    assert (rgb[original[:, :, 3] == 0] == 255).all()


@needs_shared_media
def test_jpeg_decodes_to_the_same_pixels_as_pillow():
    path = IMAGES / "darknet_dog.jpg"
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (768, 576)
    with Image.open(path) as opened:
        np.testing.assert_array_equal(pixels(image), pixels(opened.convert("RGB")))
    assert not fds_open_on(path)


@needs_shared_media
def test_max_pixels_refuses_a_real_image_before_decoding():
    with pytest.raises(InputError) as excinfo:
        load_image(IMAGES / "skimage_camera.png", max_pixels=1000)
    assert user_message(excinfo) == (
        "Image is 512x512 pixels (262,144 pixels); the limit is 1,000 pixels: resize it and upload again"
    )


# ---------------------------------------------------------------- images: refusals


@pytest.mark.parametrize("value", [None, ""])
def test_missing_image_is_refused(value):
    with pytest.raises(InputError) as excinfo:
        load_image(value)
    assert user_message(excinfo) == "No image: upload an image or pick an example"


def test_zero_byte_image_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        load_image(path)
    assert "empty (0 bytes)" in user_message(excinfo)


def test_text_renamed_jpg_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n" * 20)
    with pytest.raises(InputError) as excinfo:
        load_image(path)
    assert user_message(excinfo) == media.NOT_AN_IMAGE
    assert not fds_open_on(path)


def test_truncated_png_is_refused_and_closed(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.png"
    Image.fromarray(noise).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError) as excinfo:
        load_image(cut)
    assert user_message(excinfo) == media.DAMAGED_IMAGE
    assert not fds_open_on(cut)


@needs_shared_media
def test_truncated_jpeg_is_refused(tmp_path):
    source = (IMAGES / "darknet_dog.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(InputError) as excinfo:
        load_image(cut)
    assert user_message(excinfo) == media.DAMAGED_IMAGE


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(InputError) as excinfo:
        load_image(bomb)
    assert user_message(excinfo) == (
        "Image is 10,000 megapixels; the limit is 40 megapixels: resize it and upload again"
    )


def test_image_between_pillow_warning_and_error_limits_is_refused(tmp_path):
    bomb = png_declaring(tmp_path / "bomb.png", 10_000, 10_000)  # over Pillow's warning limit, under its error
    with pytest.raises(InputError) as excinfo:
        load_image(bomb, max_pixels=500_000_000)
    assert user_message(excinfo).startswith("Image is 100 megapixels; the limit is 500 megapixels")


def test_image_over_our_limit_names_its_size(tmp_path):
    big = png_declaring(tmp_path / "big.png", 8000, 6000)
    with pytest.raises(InputError) as excinfo:
        load_image(big)
    assert user_message(excinfo) == (
        "Image is 8000x6000 pixels (48 megapixels); the limit is 40 megapixels: resize it and upload again"
    )


# ---------------------------------------------------------------- images: modes, frames, orientation, size


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (12, 34, 56)).save(path)
    image = load_image(path)
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (12, 34, 56)


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
    rgb = pixels(load_image(path))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255, 4])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_palette_image_and_its_transparent_entry(tmp_path):
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    palette_image.putdata([0, 1, 2])
    opaque_path, clear_path = tmp_path / "palette.png", tmp_path / "clear.png"
    palette_image.save(opaque_path)
    palette_image.save(clear_path, transparency=1)
    assert [load_image(opaque_path).getpixel((x, 0)) for x in range(3)] == [RED, GREEN, BLUE]
    assert [load_image(clear_path).getpixel((x, 0)) for x in range(3)] == [RED, WHITE, BLUE]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and close_to(image.getpixel((8, 8)), RED)


def test_animated_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (8, 8), color) for color in (GREEN, RED, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as opened:
        assert opened.n_frames == 3
    image = load_image(path)
    assert image.mode == "RGB" and image.getpixel((4, 4)) == GREEN


def test_animated_webp_gives_its_first_frame(tmp_path):
    path = tmp_path / "blink.webp"
    frames = [Image.new("RGBA", (8, 8), color + (255,)) for color in (BLUE, RED)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    with Image.open(path) as opened:
        assert opened.n_frames == 2
    assert load_image(path).getpixel((4, 4)) == BLUE


def test_exif_orientation_6_rotates_the_picture_upright(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 10, 10))  # top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    image = load_image(path)
    assert image.size == (20, 40)
    assert close_to(image.getpixel((17, 2)), RED)  # the stored top-left is now top-right
    assert close_to(image.getpixel((2, 2)), BLUE)
    assert close_to(image.getpixel((17, 37)), BLUE)


def test_large_png_is_downscaled_keeping_aspect(tmp_path):
    wide = Image.new("RGB", (5000, 100), RED)
    wide.paste(BLUE, (2500, 0, 5000, 100))
    path = tmp_path / "wide.png"
    wide.save(path)
    image = load_image(path)
    assert image.size == (4096, 82)
    assert image.getpixel((100, 40)) == RED and image.getpixel((4000, 40)) == BLUE


@pytest.fixture
def drafts(monkeypatch) -> list[tuple[int, int]]:
    """The sizes JPEG decoding is asked to draft to, as they are asked."""
    asked: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        asked.append(size)
        return original_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    return asked


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path, drafts):
    photo = Image.new("RGB", (2400, 1600), RED)
    photo.paste(BLUE, (1200, 0, 2400, 1600))
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    image = load_image(path, max_side=300)
    assert drafts == [(300, 200)]
    assert image.size == (300, 200)
    assert close_to(image.getpixel((50, 100)), RED) and close_to(image.getpixel((250, 100)), BLUE)


def test_phone_photo_decodes_at_the_scale_that_keeps_the_decode_side(tmp_path, drafts):
    """A 12-megapixel JPEG decodes at half scale (its shorter side 1512 >= DECODE_SIDE); a quarter would be 756."""
    photo = Image.new("RGB", (4032, 3024), RED)
    photo.paste(BLUE, (2016, 0, 4032, 3024))
    path = tmp_path / "phone.jpg"
    photo.save(path, quality=90)
    smaller = tmp_path / "smaller.jpg"
    photo.resize((2000, 1500)).save(smaller, quality=90)
    assert DECODE_SIDE == 1152
    image = load_image(path)
    assert drafts == [(1536, 1152)] and image.size == (2016, 1512)
    assert close_to(image.getpixel((100, 700)), RED) and close_to(image.getpixel((1900, 700)), BLUE)
    assert load_image(smaller).size == (2000, 1500) and len(drafts) == 1  # half scale would go under 1152
    assert load_image(path, decode_side=300).size == (504, 378)  # an eighth: 378 >= 300
    assert load_image(Image.open(path)).size == (4032, 3024)  # an image already opened is decoded as it is


def test_small_image_is_not_resized(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (300, 200), GREEN).save(path)
    assert load_image(path, max_side=300).size == (300, 200)


# ---------------------------------------------------------------- images: PIL and numpy inputs


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (Image.new("1", (2, 2), 1), WHITE),
        (Image.new("L", (2, 2), 77), (77, 77, 77)),
        (Image.new("LA", (2, 2), (0, 0)), WHITE),
        (Image.new("RGBA", (2, 2), (0, 0, 255, 255)), BLUE),
        (Image.new("YCbCr", (2, 2), (76, 85, 255)), RED),
        (Image.new("CMYK", (2, 2), (255, 0, 255, 0)), GREEN),
        (Image.new("F", (2, 2), 0.5), (128, 128, 128)),
        (Image.new("I", (2, 2), 65535), WHITE),
        (Image.new("I;16", (2, 2), 257 * 64), (64, 64, 64)),
    ],
    ids=lambda value: getattr(value, "mode", None) or str(value),
)
def test_pil_modes_become_rgb(source, expected):
    image = load_image(source)
    assert image.mode == "RGB" and image is not source
    assert close_to(image.getpixel((1, 1)), expected, tolerance=2)


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [-1000, 0, 1000], [0, 128, 255]),  # signed: its range is stretched
        ("I", [0, 100, 255], [0, 100, 255]),  # 8-bit values in a 32-bit image
        ("F", [0.0, 500.0, 1000.0], [0, 128, 255]),  # floats beyond [0, 255]: stretched
    ],
)
def test_wide_greyscale_values_are_scaled_to_8_bit(mode, values, expected):
    source = Image.new(mode, (3, 1))
    source.putdata(values)
    np.testing.assert_array_equal(pixels(load_image(source))[0, :, 1], expected)


def test_float_image_with_nan_is_refused():
    source = Image.new("F", (2, 1))
    source.putdata([0.5, float("nan")])
    with pytest.raises(InputError) as excinfo:
        load_image(source)
    assert user_message(excinfo) == media.INVALID_PIXELS


def test_half_transparent_pixel_is_blended_with_white():
    image = load_image(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert close_to(image.getpixel((0, 0)), (127, 127, 127), tolerance=1)


def test_pil_image_is_copied_not_returned():
    source = Image.new("RGB", (4, 4), RED)
    image = load_image(source)
    image.putpixel((0, 0), BLUE)
    assert source.getpixel((0, 0)) == RED


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 6, 3), (10, 20, 30), dtype=np.uint8), (10, 20, 30)),
        (np.full((4, 6), 200, dtype=np.uint8), (200, 200, 200)),
        (np.full((4, 6, 1), 90, dtype=np.uint8), (90, 90, 90)),
        (np.full((4, 6, 4), (0, 255, 0, 0), dtype=np.uint8), WHITE),
        (np.full((4, 6, 3), 65535, dtype=np.uint16), WHITE),
        (np.full((4, 6), 257 * 100, dtype=np.uint16), (100, 100, 100)),
        (np.full((4, 6, 3), (1.0, 0.5, 0.0), dtype=np.float32), (255, 128, 0)),
        (np.ones((4, 6), dtype=bool), WHITE),
    ],
    ids=["uint8-rgb", "uint8-grey", "uint8-hw1", "uint8-rgba-clear", "uint16-rgb", "uint16-grey", "float", "bool"],
)
def test_numpy_arrays_become_rgb(array, expected):
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (6, 4)
    assert image.getpixel((3, 2)) == expected


def test_numpy_array_over_max_side_is_downscaled():
    image = load_image(np.zeros((100, 50, 3), dtype=np.uint8), max_side=10)
    assert image.size == (5, 10)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((4, 4), dtype=np.int64), "type int64 are not supported"),
        (np.full((4, 4), np.nan, dtype=np.float32), "invalid values (NaN or infinity)"),
        (np.full((4, 4), 255.0), "float images must be in [0, 1]"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "expected height x width with 1, 3 or 4 channels"),
        (np.zeros((0, 5, 3), dtype=np.uint8), "Image has no pixels"),
        (np.zeros((2000, 2000), dtype=np.uint8), "the limit is 1.0 megapixels"),
    ],
)
def test_unusable_numpy_arrays_are_refused(array, fragment):
    with pytest.raises(InputError) as excinfo:
        load_image(array, max_pixels=1_000_000)
    assert fragment in user_message(excinfo)


# ---------------------------------------------------------------- audio: real files


@needs_shared_media
def test_stereo_44k_flac_is_mixed_and_resampled():
    clip = load_audio(AUDIO / "jfk.flac")
    assert (clip.source_rate, clip.channels, clip.sample_rate) == (44100, 2, 16000)
    assert clip.duration == pytest.approx(11.0, abs=1e-3)
    assert clip.samples.dtype == np.float32 and clip.samples.shape == (176_000,)
    stereo, rate = soundfile.read(AUDIO / "jfk.flac", dtype="float32")
    expected = soxr.resample(stereo.mean(axis=1), rate, 16000, quality="HQ")
    np.testing.assert_allclose(clip.samples, expected, atol=1e-5)


@needs_shared_media
def test_stereo_wav_mono_mix_is_the_channel_mean():
    stereo, rate = soundfile.read(AUDIO / "stereo_diarization.wav", dtype="float32")
    assert rate == 16000 and stereo.shape[1] == 2
    clip = load_audio(str(AUDIO / "stereo_diarization.wav"))
    assert clip.channels == 2 and clip.samples.shape == (80_000,)
    np.testing.assert_allclose(clip.samples, stereo.mean(axis=1), atol=1e-7)

    at_8k = load_audio(AUDIO / "stereo_diarization.wav", target_rate=8000)
    assert at_8k.sample_rate == 8000 and at_8k.samples.shape == (40_000,)
    np.testing.assert_allclose(at_8k.samples, soxr.resample(stereo.mean(axis=1), 16000, 8000, "HQ"), atol=1e-6)


@needs_shared_media
def test_mp3_is_decoded_and_resampled():
    clip = load_audio(AUDIO / "multilingual.mp3")
    assert (clip.source_rate, clip.channels) == (24000, 1)
    assert clip.duration == pytest.approx(59.9, abs=0.05)
    assert len(clip.samples) == pytest.approx(59.9 * 16000, abs=16)
    assert 0.3 < float(np.abs(clip.samples).max()) <= 1.0


@needs_shared_media
def test_22k_wav_is_resampled_and_quiet_clip_is_not_normalised():
    clip = load_audio(AUDIO / "LJ050-0131.wav")
    assert clip.source_rate == 22050 and len(clip.samples) == pytest.approx(7.658 * 16000, abs=20)
    quiet = load_audio(AUDIO / "speechbrain_example1.wav")
    original, _ = soundfile.read(AUDIO / "speechbrain_example1.wav", dtype="float32")
    np.testing.assert_array_equal(quiet.samples, original)  # same rate: untouched, peak stays about 0.09
    assert float(np.abs(quiet.samples).max()) == pytest.approx(0.0866, abs=1e-3)


@needs_shared_media
def test_file_over_the_limit_names_both_durations():
    with pytest.raises(InputError) as excinfo:
        load_audio(AUDIO / "jfk.flac", max_seconds=5)
    assert user_message(excinfo) == "Audio is 11 s long; the limit is 5 s: trim it"


@needs_shared_media
def test_truncated_mp3_decodes_what_is_there(tmp_path):
    source = (AUDIO / "multilingual.mp3").read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(source[: len(source) // 2])
    clip = load_audio(half)
    assert clip.duration == pytest.approx(29.9, abs=0.5)
    assert np.isfinite(clip.samples).all()


@needs_shared_media
def test_mp3_with_a_damaged_middle_fails_cleanly_or_decodes(tmp_path):
    damaged = bytearray((AUDIO / "multilingual.mp3").read_bytes())
    damaged[50_000:150_000] = bytes(100_000)
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(damaged))
    try:
        clip = load_audio(path)
    except InputError as error:  # what libsndfile 1.2 (mpg123 gives up resyncing) does
        assert str(error) == media.DAMAGED_AUDIO
    else:  # a decoder that resyncs returns the readable audio
        assert 0 < clip.duration <= 60 and np.isfinite(clip.samples).all()
    assert not fds_open_on(path)


@needs_shared_media
def test_audioread_fallback_matches_soundfile(monkeypatch):
    path = AUDIO / "stereo_diarization.wav"
    expected = load_audio(path)
    monkeypatch.setattr(media.audio.soundfile, "info", soundfile_cannot_read)
    clip = load_audio(path)
    assert (clip.source_rate, clip.channels, clip.duration) == (16000, 2, 5.0)
    np.testing.assert_allclose(clip.samples, expected.samples, atol=1e-7)


class FakeAudioreadSource:
    """What audioread.audio_open gives for a stream of unknown length, in 16-bit buffers that split frames."""

    def __init__(self, interleaved: np.ndarray, samplerate: int, channels: int) -> None:
        self.data = interleaved.astype("<i2").tobytes()
        self.samplerate, self.channels, self.duration = samplerate, channels, 0

    def __enter__(self) -> FakeAudioreadSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self):
        for start in range(0, len(self.data), 4095):  # odd sizes: frames straddle buffers
            yield self.data[start : start + 4095]


def test_audioread_stream_of_unknown_length_is_decoded_and_limited(monkeypatch):
    import audioread

    stereo = np.stack([np.full(16000, 8192), np.full(16000, -4096)], axis=1)
    opened = []

    def open_fake(path):
        opened.append(path)
        return FakeAudioreadSource(stereo.reshape(-1), 16000, 2)

    monkeypatch.setattr(media.audio.soundfile, "info", soundfile_cannot_read)
    monkeypatch.setattr(audioread, "audio_open", open_fake)
    clip = load_audio(__file__)
    assert opened and (clip.channels, clip.duration) == (2, 1.0)
    np.testing.assert_allclose(clip.samples, np.full(16000, (8192 - 4096) / 2 / 32768), atol=1e-7)
    with pytest.raises(InputError) as excinfo:
        load_audio(__file__, max_seconds=0.5)
    assert user_message(excinfo) == "Audio is longer than the 0.5 s limit: trim it"


# ---------------------------------------------------------------- audio: synthetic files


def test_8k_int16_wav_is_upsampled(tmp_path):
    path = tmp_path / "phone.wav"
    soundfile.write(path, tone(8000, 1.0, 440, 0.5), 8000, subtype="PCM_16")
    clip = load_audio(path)
    assert (clip.source_rate, clip.channels, clip.duration) == (8000, 1, 1.0)
    assert clip.samples.shape == (16_000,) and clip.samples.dtype == np.float32
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=2)
    assert float(np.abs(clip.samples).max()) == pytest.approx(0.5, abs=0.02)


def test_48k_float_wav_keeps_its_level(tmp_path):
    path = tmp_path / "studio.wav"
    soundfile.write(path, tone(48000, 0.5, 1000, 0.25).astype(np.float32), 48000, subtype="FLOAT")
    clip = load_audio(path)
    assert clip.source_rate == 48000 and clip.samples.shape == (8000,)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(1000, abs=3)
    assert float(np.abs(clip.samples).max()) == pytest.approx(0.25, abs=0.01)


def test_8_bit_unsigned_wav_is_centred(tmp_path):
    path = tmp_path / "old.wav"
    soundfile.write(path, tone(16000, 0.5, 300, 0.5), 16000, subtype="PCM_U8")
    clip = load_audio(path)
    assert float(np.abs(clip.samples).max()) == pytest.approx(0.5, abs=0.02)
    assert abs(float(clip.samples.mean())) < 0.01


def test_24_bit_wav_keeps_its_precision(tmp_path):
    path = tmp_path / "deep.wav"
    signal = tone(16000, 0.5, 300, 0.7)
    soundfile.write(path, signal, 16000, subtype="PCM_24")
    np.testing.assert_allclose(load_audio(path).samples, signal, atol=2**-22)


def test_six_channels_are_averaged(tmp_path):
    path = tmp_path / "surround.wav"
    signal = tone(16000, 0.5, 200, 0.8)
    channels = np.stack([signal * (k + 1) / 6 for k in range(6)], axis=1)
    soundfile.write(path, channels, 16000, subtype="FLOAT")
    clip = load_audio(path)
    assert clip.channels == 6
    np.testing.assert_allclose(clip.samples, signal * 3.5 / 6, atol=1e-6)


def test_more_channels_than_supported_is_refused(tmp_path):
    path = tmp_path / "array.wav"
    soundfile.write(path, np.full((1600, 9), 0.1), 16000, subtype="FLOAT")
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo).startswith("Audio has 9 channels; at most 8 are supported")


def test_long_file_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    path = sparse_wav(tmp_path / "three_hours.wav", 3 * 3600)
    assert path.stat().st_size > 86_000_000 and path.stat().st_blocks * 512 < 1_000_000

    def no_decoding(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(soundfile.SoundFile, "read", no_decoding)
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo) == "Audio is 3 h 0 min long; the limit is 10 min: trim it"


def test_zero_length_wav_is_refused(tmp_path):
    path = tmp_path / "nothing.wav"
    soundfile.write(path, np.zeros(0), 16000)
    assert path.stat().st_size > 0
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo) == media.EMPTY_AUDIO


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "nothing.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert "empty (0 bytes)" in user_message(excinfo)


@pytest.mark.parametrize("peak", [0.0, 1e-4])
def test_silent_wav_is_refused(tmp_path, peak):
    path = tmp_path / "silence.wav"
    soundfile.write(path, tone(16000, 1.0, 300, peak), 16000, subtype="FLOAT")
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo) == "Audio is silent: record again or upload a clip with speech"


def test_quiet_but_audible_wav_is_kept_as_recorded(tmp_path):
    path = tmp_path / "quiet.wav"
    soundfile.write(path, tone(16000, 1.0, 300, 0.01), 16000, subtype="FLOAT")
    assert float(np.abs(load_audio(path).samples).max()) == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_invalid_float_samples_are_refused(tmp_path, bad):
    signal = tone(16000, 0.5, 300, 0.5).astype(np.float32)
    signal[100] = bad
    path = tmp_path / "broken.wav"
    soundfile.write(path, signal, 16000, subtype="FLOAT")
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo).startswith("Audio contains invalid samples (NaN or infinity)")


def test_text_renamed_wav_is_refused(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("RIFF? no, just a shopping list\n" * 30)
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert user_message(excinfo) == media.NOT_AUDIO
    assert not fds_open_on(path)


@pytest.mark.parametrize("value", [None, "", "/nonexistent/clip.wav", (16000, None)])
def test_missing_audio_is_refused(value):
    with pytest.raises(InputError) as excinfo:
        load_audio(value)
    assert user_message(excinfo) == "No audio: record or upload a clip"


# ---------------------------------------------------------------- audio: (rate, ndarray) from gr.Audio


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([0, 16384, -32768, 32767], dtype=np.int16), [0, 0.5, -1, 32767 / 32768]),
        (np.array([128, 192, 0, 255], dtype=np.uint8), [0, 0.5, -1, 127 / 128]),
        (np.array([0, 64, -128, 127], dtype=np.int8), [0, 0.5, -1, 127 / 128]),
        (np.array([0, 2**30, -(2**31), 2**31 - 1], dtype=np.int32), [0, 0.5, -1, 1]),
        (np.array([0, 0.5, -1, 1.5], dtype=np.float64), [0, 0.5, -1, 1.5]),
    ],
    ids=["int16", "uint8", "int8", "int32", "float64"],
)
def test_tuple_samples_are_scaled_by_dtype(samples, expected):
    clip = load_audio((16000, samples))
    assert clip.samples.dtype == np.float32 and (clip.source_rate, clip.channels) == (16000, 1)
    np.testing.assert_allclose(clip.samples, expected, atol=1e-6)
    assert clip.duration == pytest.approx(4 / 16000)


def test_tuple_stereo_8k_is_mixed_and_upsampled():
    left = (tone(8000, 1.0, 440, 0.5) * 32767).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    clip = load_audio((8000, stereo))
    assert (clip.source_rate, clip.channels, clip.duration) == (8000, 2, 1.0)
    assert clip.samples.shape == (16_000,)
    assert float(np.abs(clip.samples).max()) == pytest.approx(0.25, abs=0.01)
    assert dominant_frequency(clip.samples, 16000) == pytest.approx(440, abs=2)


def test_tuple_float32_at_48k():
    clip = load_audio((48000, tone(48000, 0.3, 500, 0.3).astype(np.float32)))
    assert clip.samples.shape == (4800,) and clip.sample_rate == 16000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1000, np.ones(700_000, dtype=np.int16)), "Audio is 11 min 40 s long; the limit is 10 min: trim it"),
        ((16000, np.zeros(16000, dtype=np.int16)), media.SILENT_AUDIO),
        ((16000, np.zeros(0, dtype=np.int16)), media.EMPTY_AUDIO),
        ((16000, np.array([0.1, np.nan], dtype=np.float32)), media.INVALID_SAMPLES),
    ],
    ids=["too-long", "silent", "empty", "nan"],
)
def test_unusable_tuples_are_refused(value, message):
    with pytest.raises(InputError) as excinfo:
        load_audio(value)
    assert user_message(excinfo) == message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ((0, np.ones(10, dtype=np.int16)), "sample rate 0 Hz is not supported"),
        ((16000.5, np.ones(10, dtype=np.int16)), "sample rate 16000.5 Hz is not supported"),
        ((16000, np.ones((2, 2, 2), dtype=np.int16)), "expected (samples,) or (samples, channels)"),
        ((16000, np.ones(10, dtype=np.int64)), "type int64 are not supported"),
    ],
)
def test_malformed_tuples_are_refused(value, fragment):
    with pytest.raises(InputError) as excinfo:
        load_audio(value)
    assert fragment in user_message(excinfo)


def test_audio_clip_is_frozen():
    clip = load_audio((16000, np.array([0, 1000, -1000], dtype=np.int16)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.source_rate = 8000  # type: ignore[misc]
    assert isinstance(clip, AudioClip)


# ---------------------------------------------------------------- describe_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (12.5, "12.5 s"),
        (11.0, "11 s"),
        (59.97, "1 min"),
        (600, "10 min"),
        (665.2, "11 min 5 s"),
        (3599.9, "1 h 0 min"),
        (10_800, "3 h 0 min"),
        (5 * 3600 + 59 * 60 + 40, "6 h 0 min"),
    ],
)
def test_describe_duration(seconds, text):
    assert describe_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_describe_duration_rejects_non_durations(seconds):
    with pytest.raises(ValueError):
        describe_duration(seconds)
