"""One step of live transcription as a task: a buffer of at most 30 s in, its timed and scored hypothesis out.

Each step of a live stream runs through Runtime.run like any request, so it uses the shared model cache locally,
the Whisper deployment on Ray Serve, and a GPU call on ZeroGPU. The policy that decides what to send and what to
commit is mmdemo.tasks.speech.live; this task only decodes: greedy with timestamps, after the committed text before
the buffer as Whisper's prompt, with the words committed from the buffer already as the transcript's forced start
while other live steps share the CPU (they are not decoded again, token by token), over the start of a window only
(the buffer and a margin: `context_seconds`), with a full window again for a hypothesis that loops. The hypothesis
keeps its unfinished last segment (the file transcription drops it to seek), since live mode shows it as the
tentative tail.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.i18n import Message
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import GPU_SETUP_SECONDS, ModelSpec, Task, clean_text
from mmdemo.tasks.speech import greedy as whisper_greedy
from mmdemo.tasks.speech.step_threads import live_step_threads
from mmdemo.tasks.speech.task import SAMPLE_RATE, WINDOW_SECONDS, SpeechTask, is_english_only, parse_language
from mmdemo.tasks.speech.words import split_words

MAX_PROMPT_CHARS = 1000  # the policy sends about 200; Whisper keeps at most 223 prompt tokens anyway
# GPU seconds of one step: encoding one window and decoding a few dozen tokens takes well under a second on a GPU.
GPU_SECONDS_PER_STEP = 2.0
COMPRESSION_RATIO_LIMIT = 2.4  # above it, a hypothesis repeats itself (see `repeats_itself`)
TOKENS_PER_SECOND = 10  # a step's ceiling on generated tokens per second of audio (see `max_tokens`)
# A step encodes only the start of a window, as whisper.cpp's `audio_ctx` does: the buffer plus CONTEXT_MARGIN_SECONDS,
# rounded up to a multiple of CONTEXT_STEP_SECONDS, at least MIN_CONTEXT_SECONDS (see `context_seconds`).
MIN_CONTEXT_SECONDS = 10.0
CONTEXT_MARGIN_SECONDS = 3.0
CONTEXT_STEP_SECONDS = 5.0


@dataclass(frozen=True)
class LiveStepInputs:
    model: ModelSpec
    samples: np.ndarray  # float32 mono at 16 kHz, at most one window
    prompt: str  # committed text before the buffer ("" for none)
    prefix: str  # committed text from the buffer's start: forced as the hypothesis' start while steps crowd the CPU
    language: str | None  # None: detect


class LiveStepTask(Task[LiveStepInputs]):
    name = "speech_live"
    title = "Live speech step"
    has_tab = False  # the speech tab's Live mode runs it
    description = "One step of live transcription: the current audio buffer's timed, scored hypothesis."
    models = SpeechTask.models
    architectures = SpeechTask.architectures
    serve_family = "whisper"

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> LiveStepInputs:
        spec = self.model_spec(raw.get("model"), allow_custom=settings.allow_custom_models)
        language = parse_language(raw.get("language"))
        if is_english_only(spec.id) and language not in (None, "en"):
            raise InputError("error.speech_live.english_only", model=spec.id)
        samples = raw.get("samples")
        if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype != np.float32:
            raise InputError("error.speech_live.samples_type")
        if not 0 < len(samples) <= WINDOW_SECONDS * SAMPLE_RATE or not np.isfinite(samples).all():
            raise InputError("error.speech_live.samples_length", seconds=WINDOW_SECONDS)
        prompt = clean_text(raw.get("prompt"), what=Message("error.field.prompt"), max_chars=MAX_PROMPT_CHARS,
                            required=False)
        prefix = clean_text(raw.get("prefix"), what=Message("error.field.prefix"), max_chars=MAX_PROMPT_CHARS,
                            required=False)
        return LiveStepInputs(model=spec, samples=samples, prompt=prompt, prefix=prefix, language=language)

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: LiveStepInputs) -> dict[str, Any]:
        bundle = bundles["model"]
        if not whisper_greedy.supports(bundle.model):
            raise InputError("error.speech_live.not_greedy", model=inputs.model.id)
        with live_step_threads(bundle.device) as crowded:
            # The committed words are forced only while other live steps share the CPU: decoding them again costs
            # more compute, but on its own a step can afford it, and it reads a little better (docs/live.md).
            return self._decode(bundle, inputs, force_prefix=crowded)

    def _decode(self, bundle: ModelBundle, inputs: LiveStepInputs, *, force_prefix: bool) -> dict[str, Any]:
        greedy = whisper_greedy.GreedyWhisper(bundle.model)
        audio_seconds = len(inputs.samples) / SAMPLE_RATE
        previous = bundle.tokenizer.encode(" " + inputs.prompt, add_special_tokens=False) if inputs.prompt else []
        forced = (bundle.tokenizer.encode(" " + inputs.prefix, add_special_tokens=False)
                  if inputs.prefix and force_prefix else [])
        limit = max_tokens(audio_seconds)
        seconds = context_seconds(audio_seconds)
        while True:
            # The log-mel features of `seconds` only: those of a 30 s window cut short (the same normalisation, as
            # the loudest frame lies in the audio either way), at a fraction of the cost.
            features = bundle.processor.feature_extractor(inputs.samples, sampling_rate=SAMPLE_RATE,
                                                          max_length=round(seconds * SAMPLE_RATE),
                                                          return_tensors="pt").input_features
            frames = round(seconds / whisper_greedy.FRAME_SECONDS)
            features = F.pad(features, (0, frames - features.shape[-1]))
            hidden = greedy.encode_prefix(bundle.prepare({"input_features": features})["input_features"], frames)
            language = inputs.language
            if greedy.multilingual and language is None:
                language = greedy.detect_language(hidden)
            tokens, probabilities = greedy.decode_with_probabilities(
                hidden, greedy.prompt(language, "transcribe", True, previous=previous), timestamps=True,
                max_tokens=limit, forced=forced)
            if seconds >= WINDOW_SECONDS or not repeats_itself(bundle.tokenizer, tokens, limit, greedy.eos):
                break
            seconds = WINDOW_SECONDS  # a shorter context made Whisper loop: decode the full window instead
        segments = timed_pieces(greedy, tokens, probabilities)
        return {"language": language or "en", "segments": [
            {"start": start, "end": end, "words": split_words(bundle.tokenizer, piece, scores, greedy.eos)}
            for start, end, piece, scores in segments]}

    def format(self, output: dict[str, Any], inputs: LiveStepInputs) -> dict[str, Any]:
        duration = len(inputs.samples) / SAMPLE_RATE
        segments = [{**s, "start": min(s["start"], duration),
                     "end": None if s["end"] is None else min(s["end"], duration)}
                    for s in output["segments"] if s["words"]]
        return {"language": output["language"], "duration": round(duration, 3), "segments": segments}

    def gpu_seconds(self, inputs: LiveStepInputs) -> float:
        return GPU_SETUP_SECONDS + GPU_SECONDS_PER_STEP


def context_seconds(audio_seconds: float) -> float:
    """How much of a window a step encodes for `audio_seconds` of audio.

    The encoder's cost grows with its input: on tiny.en a 10 s context encodes in about a quarter of a 30 s window's
    time. Whisper only ever saw 30 s windows in training, though: on contexts of 5 s tiny.en loops ("And so my fellow
    Americans." over and over); from 10 s on, with a margin after the audio, it reads the English clips as well as
    with the full window (docs/live.md has the figures), and a step that loops anyway decodes the full window again.
    """
    rounded = math.ceil((audio_seconds + CONTEXT_MARGIN_SECONDS) / CONTEXT_STEP_SECONDS) * CONTEXT_STEP_SECONDS
    return min(WINDOW_SECONDS, max(MIN_CONTEXT_SECONDS, rounded))


def max_tokens(seconds: float) -> int:
    """The most tokens a step may generate for `seconds` of audio: fast speech says about 5 tokens a second (words,
    punctuation and two timestamps a segment); more is a repetition loop, which would otherwise run to the decoder's
    448 positions (several seconds of compute) and repeat its words into the transcript."""
    return int(TOKENS_PER_SECOND * seconds) + 10


def repeats_itself(tokenizer: Any, tokens: list[int], limit: int, first_special: int) -> bool:
    """Whether a hypothesis looks like a repetition loop: it ran into `limit`, or its text compresses more than
    2.4 times (openai/whisper's `compression_ratio_threshold`, for the same purpose)."""
    if len(tokens) >= limit:
        return True
    text = tokenizer.decode([token for token in tokens if token < first_special]).encode()
    return len(text) > 0 and len(text) / len(zlib.compress(text)) > COMPRESSION_RATIO_LIMIT


def timed_pieces(greedy: whisper_greedy.GreedyWhisper, tokens: list[int],
                 probabilities: list[float]) -> list[tuple[float, float | None, list[int], list[float]]]:
    """Split a window's tokens at timestamps: (start, end, text tokens, their probabilities) per segment; the last
    segment's end is None when Whisper had not closed it (the speech goes on past the buffer)."""
    begin = greedy.timestamp_begin
    pieces: list[tuple[float, float | None, list[int], list[float]]] = []
    start: float | None = None
    text: list[int] = []
    scores: list[float] = []
    for token, probability in zip(tokens, probabilities, strict=True):
        if token < begin:
            text.append(token)
            scores.append(probability)
            continue
        seconds = (token - begin) * whisper_greedy.TIME_PRECISION
        if text:  # a closing timestamp
            pieces.append((start if start is not None else seconds, seconds, text, scores))
            start, text, scores = None, [], []
        else:  # an opening one
            start = seconds
    if text:
        pieces.append((start if start is not None else (pieces[-1][1] if pieces else 0.0), None, text, scores))
    return pieces
