"""Word confidence: the greedy pass's token probabilities against generate(output_scores=True), and words built
from them (the mean of their tokens' probabilities), through the speech task.

The parity checks run on the tiny random checkpoints and, where the offline pack and ../shared/media exist, on
real Whisper tiny.en and base.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmdemo.tasks  # noqa: F401
from mmdemo.config import default_model_dir
from mmdemo.errors import InputError
from mmdemo.media import load_audio
from mmdemo.models.loading import load_bundle
from mmdemo.offline.packs import PACKS, install_state
from mmdemo.tasks.speech.greedy import GreedyWhisper
from mmdemo.tasks.speech.task import parse_confidence
from mmdemo.tasks.speech.words import copy_probabilities, mark_low_confidence, split_words
from mmdemo.testing.wer import wer

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "audio"
WHISPER = frozenset({"WhisperForConditionalGeneration"})
PACK_DIR = default_model_dir()
REAL = pytest.mark.skipif(
    not MEDIA.is_dir() or any(install_state(PACK_DIR, PACKS[m]) != "installed" for m in PACKS),
    reason="needs ../shared/media and the offline Whisper pack (python -m mmdemo.models install-offline)",
)
TOLERANCE = 1e-4
JFK = "And so, my fellow Americans, ask not what your country can do for you; ask what you can do for your country."


def bundle(path: Path):
    return load_bundle(path, device="cpu", dtype=torch.float32, allowed=WHISPER, quantize=None)


def one_window(model_bundle, samples: np.ndarray) -> torch.Tensor:
    return model_bundle.processor.feature_extractor(samples, sampling_rate=16_000, return_tensors="pt").input_features


def generate_probabilities(model, features: torch.Tensor, timestamps: bool, language: str | None):
    """generate()'s greedy tokens and the softmax of its processed scores at each chosen token (end of text
    excluded), one window."""
    options = {"language": language} if model.generation_config.is_multilingual else {}
    out = model.generate(input_features=features, return_dict_in_generate=True, output_scores=True,
                         return_timestamps=timestamps, **options)
    if timestamps:  # long-form bookkeeping: the one window's raw generate output
        out = out["segments"][0][0]["result"]
        sequences, scores = out["sequences"], out["scores"]
    else:
        sequences, scores = out.sequences[0], out.scores
    generated = sequences.tolist()[-len(scores):]
    probabilities = [float(torch.softmax(score.reshape(-1).float(), -1)[token])
                     for score, token in zip(scores, generated, strict=True)]
    eos = model.generation_config.eos_token_id
    if generated[-1] == eos:
        generated, probabilities = generated[:-1], probabilities[:-1]
    return generated, probabilities


def assert_probabilities_match(model, features: torch.Tensor, language: str | None) -> None:
    greedy = GreedyWhisper(model)
    with torch.inference_mode():
        for timestamps in (False, True):
            tokens, expected = generate_probabilities(model, features, timestamps, language)
            transcript = greedy.transcribe(features, language=language, timestamps=timestamps)
            mine = [t for s in transcript.segments for t in s.tokens]
            probabilities = [p for s in transcript.segments for p in s.probabilities]
            assert mine == tokens[:len(mine)] and len(mine) >= len(tokens) - 2  # an unclosed tail may be cut
            assert len(probabilities) == len(mine)
            assert all(0.0 < p <= 1.0 for p in probabilities)
            assert np.max(np.abs(np.array(probabilities) - np.array(expected[:len(mine)]))) < TOLERANCE


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.1 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)


@pytest.mark.parametrize("model_id", ["openai/whisper-base", "distil-whisper/distil-small.en"])
def test_tiny_checkpoints_probabilities_match_generate_scores(tiny_model_dir, model_id):
    model_bundle = bundle(tiny_model_dir / model_id)
    language = "en" if model_bundle.model.generation_config.is_multilingual else None
    assert_probabilities_match(model_bundle.model, one_window(model_bundle, noise(6.0, seed=1)), language)


@REAL
@pytest.mark.parametrize(("model_id", "name", "language"), [
    ("openai/whisper-tiny.en", "jfk.flac", None),
    ("openai/whisper-base", "LDC93S1.wav", "en"),
])
def test_real_weights_probabilities_match_generate_scores(model_id, name, language):
    model_bundle = bundle(PACK_DIR / model_id)
    samples = load_audio(str(MEDIA / name), max_seconds=30, target_rate=16_000).samples
    assert_probabilities_match(model_bundle.model, one_window(model_bundle, samples), language)


@REAL
def test_words_are_whole_words_with_the_mean_of_their_tokens():
    model_bundle = bundle(PACK_DIR / "openai/whisper-tiny.en")
    tokenizer = model_bundle.tokenizer
    tokens = tokenizer.encode(" And so, my fellow Americans", add_special_tokens=False)
    probabilities = [0.1 * (i + 1) for i in range(len(tokens))]
    eos = model_bundle.model.generation_config.eos_token_id
    words = split_words(tokenizer, tokens, probabilities, first_special=eos)
    assert [w["text"] for w in words] == ["And", "so,", "my", "fellow", "Americans"]
    # "so," is two tokens ("so" and ","): its probability is their mean.
    so = tokens.index(tokenizer.encode(" so", add_special_tokens=False)[0])
    assert words[1]["probability"] == pytest.approx((probabilities[so] + probabilities[so + 1]) / 2, abs=1e-4)
    mark_low_confidence(words, 0.35)
    assert [w["low_confidence"] for w in words] == [p < 0.35 for p in (w["probability"] for w in words)]
    assert any(w["low_confidence"] for w in words) and not all(w["low_confidence"] for w in words)


@REAL
def test_the_speech_api_returns_scored_words_and_marks_those_under_the_threshold():
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings

    runtime = local_runtime(Settings(model_dir=PACK_DIR, device="cpu", memory_budget=4 * 1024**3))
    clip = str(MEDIA / "jfk.flac")
    for mode in ("none", "segment", "word"):
        result = runtime.run("speech", {"audio": clip, "model": "openai/whisper-tiny.en", "timestamps": mode,
                                        "confidence": 0.9})
        words = result["words"]
        assert wer(JFK, " ".join(w["text"] for w in words)) <= 0.1
        scored = [w for w in words if w["probability"] is not None]
        assert len(scored) >= 0.9 * len(words)
        assert all(w["low_confidence"] == (w["probability"] < 0.9) for w in scored)
        assert 0.5 < float(np.mean([w["probability"] for w in scored])) <= 1.0  # clear speech: mostly sure
        assert result["confidence"] == 0.9


def test_copy_probabilities_matches_words_in_order_by_normalised_text():
    timed = [{"text": "Hello"}, {"text": "big"}, {"text": "world!"}]
    scored = [{"text": "hello,", "probability": 0.9}, {"text": "World", "probability": 0.4}]
    assert [w["probability"] for w in copy_probabilities(timed, scored)] == [0.9, None, 0.4]


@pytest.mark.parametrize("value", ["high", -0.1, 1.5, float("nan")])
def test_a_bad_confidence_is_refused_in_one_line(value):
    with pytest.raises(InputError, match="Confidence"):
        parse_confidence(value)
    assert parse_confidence(None) == 0.5 and parse_confidence("0.8") == 0.8
