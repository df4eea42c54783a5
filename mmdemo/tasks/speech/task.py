"""Speech to text with Whisper: any clip in, a transcript (optionally timed) out.

Clips longer than Whisper's 30 s window are transcribed completely with Whisper's sequential
long-form decoding, greedy as the checkpoints are configured, by mmdemo.tasks.speech.greedy (generate()'s
tokens, faster). Word timestamps come from the cross-attention alignment heads, via the transformers
ASR pipeline built over the cached model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.media import AudioClip, load_audio
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import GPU_SETUP_SECONDS, Comparable, ModelSpec, Task
from mmdemo.tasks.speech import greedy as whisper_greedy
from mmdemo.tasks.speech.subtitles import FORMATS, render
from mmdemo.tasks.speech.words import DEFAULT_CONFIDENCE, copy_probabilities, mark_low_confidence, split_words

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30.0
WHISPER_TASKS = ("transcribe", "translate")
TIMESTAMP_MODES = ("none", "segment", "word")
EXAMPLE_LANGUAGES = ("en", "de", "fr", "zh", "ja")  # named when a language is unknown (Whisper knows about 100)
SUBTITLE_LINE_CHARS = 42  # a common subtitle line length
# GPU time per second of audio: Whisper small decoding a full window to all 448 positions, with room to spare
# (`python -m benchmarks.gpu_seconds`).
GPU_SECONDS_PER_AUDIO_SECOND = 0.15
# A fresh GPU process sets up attention kernels for each new decoder length once, which for a full window takes
# longer than decoding it (`python -m benchmarks.gpu_seconds`). ZeroGPU runs each call in such a process.
GPU_SECONDS_FIRST_WINDOW = 22.0


def whisper_languages() -> dict[str, str]:
    """Whisper's language codes -> names ("en" -> "english")."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return dict(LANGUAGES)


def parse_language(value: Any) -> str | None:
    """None for auto-detection, else a Whisper language code; accepts codes and names."""
    text = str(value or "auto").strip().lower()
    if text in {"auto", "auto-detect", "detect"}:
        return None
    languages = whisper_languages()
    if text in languages:
        return text
    by_name = {name: code for code, name in languages.items()}
    if text in by_name:
        return by_name[text]
    raise InputError("error.speech.unknown_language", language=value, examples=", ".join(EXAMPLE_LANGUAGES))


def parse_confidence(value: Any) -> float:
    """The low-confidence threshold: a probability from 0 to 1 (None: the default)."""
    if value is None or value == "":
        return DEFAULT_CONFIDENCE
    try:
        threshold = float(value)
    except (TypeError, ValueError) as e:
        raise InputError("error.speech.confidence_not_number", value=value) from e
    if not 0.0 <= threshold <= 1.0:
        raise InputError("error.speech.confidence_range", value=threshold)
    return threshold


@dataclass(frozen=True)
class SpeechInputs:
    model: ModelSpec
    audio: AudioClip
    language: str | None  # None: detect
    task: str  # "transcribe" or "translate" (to English)
    timestamps: str  # "none", "segment" or "word"
    confidence: float = DEFAULT_CONFIDENCE  # words whose probability is under it are marked low-confidence


def is_english_only(model_id: str) -> bool:
    return model_id.endswith(".en")


class SpeechTask(Task[SpeechInputs]):
    name = "speech"
    title = "Speech to text"
    description = "Transcribe or translate speech with Whisper; download the transcript as text or subtitles."
    models = (
        ModelSpec("openai/whisper-base", note="Whisper base, 99 languages"),
        ModelSpec("openai/whisper-tiny", note="Whisper tiny, fastest"),
        ModelSpec("openai/whisper-small", note="Whisper small, more accurate, slower"),
        ModelSpec("distil-whisper/distil-small.en", note="Distil-Whisper small, English only, fast"),
        ModelSpec("openai/whisper-tiny.en", note="Whisper tiny, English only"),
    )
    architectures = frozenset({"WhisperForConditionalGeneration"})
    serve_family = "whisper"

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> SpeechInputs:
        spec = self.model_spec(raw.get("model"), allow_custom=settings.allow_custom_models)
        task = str(raw.get("task") or "transcribe").strip().lower()
        if task not in WHISPER_TASKS:
            raise InputError("error.speech.unknown_task", task=task, choices=" or ".join(WHISPER_TASKS))
        timestamps = str(raw.get("timestamps") or "none").strip().lower()
        if timestamps not in TIMESTAMP_MODES:
            raise InputError("error.speech.unknown_timestamps", timestamps=timestamps,
                             choices=", ".join(TIMESTAMP_MODES))
        language = parse_language(raw.get("language"))
        if is_english_only(spec.id) and (language not in (None, "en") or task == "translate"):
            raise InputError("error.speech.english_only", model=spec.id)
        confidence = parse_confidence(raw.get("confidence"))
        audio = load_audio(raw.get("audio"), max_seconds=settings.max_audio_seconds, target_rate=SAMPLE_RATE)
        return SpeechInputs(model=spec, audio=audio, language=language, task=task, timestamps=timestamps,
                            confidence=confidence)

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: SpeechInputs) -> dict[str, Any]:
        bundle = bundles["model"]
        if inputs.timestamps == "word":
            return _transcribe_words(bundle, inputs)
        return _transcribe(bundle, inputs)

    def format(self, output: dict[str, Any], inputs: SpeechInputs) -> dict[str, Any]:
        text, segments = output["text"], output["segments"]
        result = {
            "text": text,
            "language": output["language"],  # the chosen or detected code
            "task": inputs.task,
            "duration": round(inputs.audio.duration, 3),
            "segments": segments,
            "downloads": {fmt: render(fmt, text, segments) for fmt in FORMATS},
        }
        if "words" in output:
            result["words"] = mark_low_confidence(output["words"], inputs.confidence)
            result["confidence"] = inputs.confidence
        return result

    def compare_view(self, result: Mapping[str, Any]) -> Comparable:
        segments = tuple(f"{s['start']:.1f}–{s['end']:.1f} s: {s['text'].strip()}" for s in result["segments"])
        return Comparable(result["text"], words=True, details=segments if len(segments) > 1 else ())

    def gpu_seconds(self, inputs: SpeechInputs) -> float:
        """Word timestamps take about twice as long (the pipeline's beam search and the alignment)."""
        factor = 2.0 if inputs.timestamps == "word" else 1.0
        return GPU_SETUP_SECONDS + factor * transcription_gpu_seconds(inputs.audio.duration)


def _generate_options(bundle: ModelBundle, inputs: SpeechInputs) -> dict[str, Any]:
    """language/task only for multilingual checkpoints (English-only ones refuse them)."""
    if not getattr(bundle.model.generation_config, "is_multilingual", False):
        return {}
    return {"language": inputs.language, "task": inputs.task}


def _features(bundle: ModelBundle, samples: np.ndarray) -> dict[str, Any]:
    """Log-mel features; longer than one window means unpadded, untruncated input for long-form decoding."""
    extractor = bundle.processor.feature_extractor
    kwargs: dict[str, Any] = {"sampling_rate": SAMPLE_RATE, "return_tensors": "pt", "return_attention_mask": True}
    if len(samples) > WINDOW_SECONDS * SAMPLE_RATE:
        kwargs.update(truncation=False, padding="longest")
    features = extractor(samples, **kwargs)
    return bundle.prepare({"input_features": features.input_features, "attention_mask": features.attention_mask})


def _detect_language(bundle: ModelBundle, **encoded: Any) -> str:
    """Whisper's own language guess (from `input_features`' first window or `encoder_outputs`), as a code."""
    token_id = int(bundle.model.detect_language(**encoded)[0])
    by_id = {value: token for token, value in bundle.model.generation_config.lang_to_id.items()}
    return by_id[token_id].strip("<|>")


def _transcribe(bundle: ModelBundle, inputs: SpeechInputs) -> dict[str, Any]:
    """Transcript and segments; greedy checkpoints decode with mmdemo.tasks.speech.greedy, others with generate()."""
    if not whisper_greedy.supports(bundle.model):
        return _transcribe_with_generate(bundle, inputs)
    features = _features(bundle, inputs.audio.samples)["input_features"]
    greedy = whisper_greedy.GreedyWhisper(bundle.model)
    transcript = greedy.transcribe(
        features, language=inputs.language, task=inputs.task, timestamps=inputs.timestamps != "none")
    segments = _segments(bundle, [(s.start, s.end, s.tokens) for s in transcript.segments], inputs.audio.duration)
    # The special tokens (end of text, language, task, timestamps) all come after the text tokens.
    words = [word for s in transcript.segments
             for word in split_words(bundle.tokenizer, s.tokens, s.probabilities, greedy.eos)]
    return {"text": " ".join(s["text"] for s in segments), "language": transcript.language or "en",
            "segments": segments, "words": words}


def _segments(bundle: ModelBundle, pieces: list[tuple[float, float, Any]], duration: float) -> list[dict[str, Any]]:
    """(start, end, tokens) -> the non-empty segments as text, ends clipped to the clip."""
    segments = []
    for start, end, tokens in pieces:
        text = bundle.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if text:
            segments.append({"start": round(float(start), 3), "end": round(min(float(end), duration), 3),
                             "text": text})
    return segments


def _transcribe_with_generate(bundle: ModelBundle, inputs: SpeechInputs) -> dict[str, Any]:
    """transformers' generate(): for checkpoints configured for beam search or sampling."""
    options = _generate_options(bundle, inputs)
    batch = _features(bundle, inputs.audio.samples)
    if "language" in options and options["language"] is None:
        options["language"] = _detect_language(bundle, input_features=batch["input_features"])
    language = options.get("language") or "en"
    duration = inputs.audio.duration
    if inputs.timestamps == "none" and duration <= WINDOW_SECONDS:
        ids = bundle.model.generate(**batch, **options)
        segments = _segments(bundle, [(0.0, duration, ids[0])], duration)
    else:
        output = bundle.model.generate(**batch, return_timestamps=True, return_segments=True, **options)
        segments = _segments(bundle, [(s["start"], s["end"], s["tokens"]) for s in output["segments"][0]], duration)
    return {"text": " ".join(s["text"] for s in segments), "language": language, "segments": segments}


def _transcribe_words(bundle: ModelBundle, inputs: SpeechInputs) -> dict[str, Any]:
    from transformers import pipeline

    recognizer = pipeline(
        "automatic-speech-recognition",
        model=bundle.model,
        tokenizer=bundle.tokenizer,
        feature_extractor=bundle.processor.feature_extractor,
        device=bundle.device,
    )
    duration = inputs.audio.duration
    options = _generate_options(bundle, inputs)
    if "language" in options and options["language"] is None:
        first_window = _features(bundle, inputs.audio.samples[: int(WINDOW_SECONDS * SAMPLE_RATE)])
        options["language"] = _detect_language(bundle, input_features=first_window["input_features"])
    result = recognizer(
        inputs.audio.samples.copy(),  # the pipeline may modify its input in place
        return_timestamps="word",
        chunk_length_s=WINDOW_SECONDS if duration > WINDOW_SECONDS else None,
        generate_kwargs=options,
    )
    words = []
    for chunk in result.get("chunks", []):
        start, end = chunk["timestamp"]
        start = float(start or 0.0)
        words.append({"start": round(start, 3), "end": round(float(end if end is not None else duration), 3),
                      "text": chunk["text"].strip()})
    if whisper_greedy.supports(bundle.model):
        # The alignment pipeline's words carry times but no probabilities: those come from the greedy pass.
        scored = _transcribe(bundle, SpeechInputs(inputs.model, inputs.audio, options.get("language"), inputs.task,
                                                  "none"))["words"]
        copy_probabilities(words, scored)
    return {"text": result["text"].strip(), "language": options.get("language") or "en",
            "segments": group_words(words), "words": words}


def transcription_gpu_seconds(duration: float) -> float:
    """GPU seconds to transcribe `duration` seconds of audio, first-call set-up included (see the constants)."""
    first_window = GPU_SECONDS_FIRST_WINDOW * min(1.0, duration / WINDOW_SECONDS)
    return 2.0 + first_window + GPU_SECONDS_PER_AUDIO_SECOND * duration


def transcribe_clip(bundle: ModelBundle, clip: AudioClip, language: str | None = None) -> str:
    """Plain transcript of a clip of any length (used by other tasks, e.g. sentiment)."""
    spec = ModelSpec("(shared)")
    inputs = SpeechInputs(model=spec, audio=clip, language=language, task="transcribe", timestamps="none")
    return _transcribe(bundle, inputs)["text"]


def group_words(words: list[dict[str, Any]], max_chars: int = SUBTITLE_LINE_CHARS) -> list[dict[str, Any]]:
    """Join timed words into subtitle-sized segments of at most `max_chars` characters."""
    segments: list[dict[str, Any]] = []
    for word in words:
        if not word["text"]:
            continue
        if segments and len(segments[-1]["text"]) + 1 + len(word["text"]) <= max_chars:
            segments[-1]["text"] += " " + word["text"]
            segments[-1]["end"] = word["end"]
        else:
            segments.append(dict(word))
    return segments
