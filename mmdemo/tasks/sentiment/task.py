"""Multimodal sentiment: any mix of a text, an image and a speech recording, fused into one verdict.

Each modality gives probabilities over negative / neutral / positive:
- text: a sentiment classifier (3-class RoBERTa, or 2-class SST-2 DistilBERT mapped to 3 classes), or the
  VADER lexicon, which needs no download;
- image: CLIP (or SigLIP) zero-shot against a small ensemble of prompts per class, through the zero-shot task's
  scoring and its cache entry;
- speech: Whisper transcribes (the speech task's cache entry) and the transcript goes through the text backend.
The per-modality probabilities are then fused late (mmdemo.tasks.sentiment.fusion), with a leave-one-out ablation.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from mmdemo.config import Settings
from mmdemo.errors import InputError, ModelUnavailableError
from mmdemo.explain.grads import explain_flag
from mmdemo.i18n import Message
from mmdemo.media import AudioClip, load_audio, load_image
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import GPU_SETUP_SECONDS, Comparable, ModelSpec, Task, clean_text
from mmdemo.tasks.sentiment import fusion
from mmdemo.tasks.speech.task import SAMPLE_RATE, SpeechTask, transcribe_clip, transcription_gpu_seconds
from mmdemo.tasks.zero_shot import GPU_SECONDS_PER_PROMPT, MAX_LABEL_CHARS, ZeroShotTask, score_labels

LABELS = ("negative", "neutral", "positive")
MODALITIES = ("text", "image", "speech")
VADER = "vader"  # the text_model value that picks the VADER lexicon (no download, no cache entry)
VADER_NOTE = "VADER lexicon: rule-based, English, needs no download"
NO_INPUT = str(Message("error.sentiment.no_input"))  # the English line, for callers that compare; raised by key
TEXT_MAX_TOKENS = 512  # both text models' position limit; longer texts and transcripts are truncated

# SST-2 models have no neutral class: a verdict whose top probability is below this reads as neutral.
SST2_NEUTRAL_BELOW = 0.75
_SST2_NEUTRAL_FACTOR = SST2_NEUTRAL_BELOW / (1 - SST2_NEUTRAL_BELOW**2)  # see sst2_to_three
SST2_MAPPING_NOTE = (
    f"2-class model mapped to 3 classes: neutral = P(minority class) × {_SST2_NEUTRAL_FACTOR:.3g}, the two classes "
    f"share the rest in the model's proportions; neutral wins when the model's top probability is below "
    f"{SST2_NEUTRAL_BELOW:g}"
)
# VADER's compound score c in [-1, 1] -> softmax(VADER_SHARPNESS * (-c, VADER_NEUTRAL_BAND, c)).
VADER_NEUTRAL_BAND = 0.05  # VADER's documented threshold: |c| < 0.05 is neutral
VADER_SHARPNESS = 4.0  # c = ±1 gives about 0.98 for its class; c = 0 about 0.53 neutral
VADER_MAPPING_NOTE = (
    f"VADER compound c in [-1, 1] -> softmax({VADER_SHARPNESS:g}·(−c, {VADER_NEUTRAL_BAND:g}, c)): "
    f"neutral wins when |c| < {VADER_NEUTRAL_BAND:g}, VADER's own threshold"
)

# The image and speech models are the zero-shot and speech tasks' own lists and defaults, so a model used
# by both tabs is one cache entry.
_ZERO_SHOT = ZeroShotTask()
_SPEECH = SpeechTask()

# A few CLIP prompts per class; an image's class probability is the mean over its prompts (see classify_image).
IMAGE_PROMPTS: dict[str, tuple[str, ...]] = {
    "negative": (
        "a photo that feels sad",
        "a gloomy, depressing photo",
        "a photo of something frightening or disgusting",
        "a photo of an angry, upset person",
    ),
    "neutral": (
        "a photo that feels neutral",
        "an ordinary, unremarkable photo",
        "a plain photo of an everyday object",
        "a photo of a calm, expressionless person",
    ),
    "positive": (
        "a photo that feels happy",
        "a cheerful, joyful photo",
        "a photo of something beautiful or delightful",
        "a photo of a smiling, laughing person",
    ),
}


def _parse_weight(value: Any, modality: str) -> float:
    """A slider or API value as a float (blank: 1); fusion.check_weights judges its range."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1.0
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise InputError("error.sentiment.weight_not_number", modality=fusion.modality_name(modality),
                         value=value) from e


def parse_prompts(value: Any, label: str) -> tuple[str, ...]:
    """One prompt per line (or a list); blank gives the defaults for `label`."""
    if isinstance(value, (list, tuple)):
        value = "\n".join(str(item) for item in value)
    prompts = tuple(dict.fromkeys(" ".join(line.split()) for line in str(value or "").splitlines()))
    prompts = tuple(p for p in prompts if p)
    for prompt in prompts:
        if len(prompt) > MAX_LABEL_CHARS:
            raise InputError("error.sentiment.prompt_too_long", label=Message(f"error.sentiment.label.{label}"),
                             prompt=prompt[:20], limit=MAX_LABEL_CHARS)
    return prompts or IMAGE_PROMPTS[label]


@dataclass(frozen=True)
class SentimentInputs:
    text: str | None  # None: no text given
    image: Image.Image | None
    audio: AudioClip | None
    method: str  # one of fusion.METHODS
    weights: Mapping[str, float]  # modality -> weight for the weighted average
    text_model: ModelSpec | None  # None: the VADER lexicon
    image_model: ModelSpec
    speech_model: ModelSpec
    prompts: Mapping[str, tuple[str, ...]]  # class -> image prompts
    explain: bool = False  # also score each word of the text (mmdemo.explain.attributions)

    @property
    def modalities(self) -> tuple[str, ...]:
        given = {"text": self.text is not None, "image": self.image is not None, "speech": self.audio is not None}
        return tuple(m for m in MODALITIES if given[m])


class SentimentTask(Task[SentimentInputs]):
    name = "sentiment"
    title = "Multimodal sentiment"
    description = ("Give any mix of a text, an image and a recording: get one sentiment, what each modality said, "
                   "and how much each one counted.")
    models = (
        ModelSpec("cardiffnlp/twitter-roberta-base-sentiment-latest",
                  note="RoBERTa trained on tweets: negative / neutral / positive"),
        ModelSpec("distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                  note="DistilBERT SST-2: 2 classes, neutral when unsure"),
    )
    architectures = frozenset({"RobertaForSequenceClassification", "DistilBertForSequenceClassification"}
                              | ZeroShotTask.architectures | SpeechTask.architectures)
    compare_input = "text_model"  # compare mode compares the text models, VADER included
    extra_model_ids = (VADER,)

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> SentimentInputs:
        """Raw keys: text, image, audio (any non-empty combination), method, text_weight, image_weight,
        speech_weight, text_model ("vader" or a model id), image_model, speech_model, and
        negative_prompts / neutral_prompts / positive_prompts (one per line; blank: the defaults)."""
        custom = settings.allow_custom_models
        text = clean_text(raw.get("text"), what=Message("error.field.text"), max_chars=settings.max_text_chars,
                          required=False) or None
        given_image = _given(raw.get("image"))
        given_audio = _given(raw.get("audio"))
        if text is None and not given_image and not given_audio:
            raise InputError("error.sentiment.no_input")
        method = str(raw.get("method") or fusion.WEIGHTED_AVERAGE).strip().lower()
        if method not in fusion.METHODS:
            raise InputError("error.sentiment.unknown_method", method=method, choices=", ".join(fusion.METHODS))
        weights = {m: _parse_weight(raw.get(f"{m}_weight"), m) for m in MODALITIES}
        text_model_id = str(raw.get("text_model") or "").strip()
        text_model = None if text_model_id.lower() == VADER else self.model_spec(text_model_id, allow_custom=custom)
        inputs = SentimentInputs(
            text=text,
            image=load_image(raw.get("image"), max_pixels=settings.max_image_pixels) if given_image else None,
            audio=(load_audio(raw.get("audio"), max_seconds=settings.max_audio_seconds, target_rate=SAMPLE_RATE)
                   if given_audio else None),
            method=method,
            weights=weights,
            text_model=text_model,
            image_model=_ZERO_SHOT.model_spec(raw.get("image_model"), allow_custom=custom),
            speech_model=_SPEECH.model_spec(raw.get("speech_model"), allow_custom=custom),
            prompts={label: parse_prompts(raw.get(f"{label}_prompts"), label) for label in LABELS},
            explain=explain_flag(raw.get("explain")),
        )
        prompt_count = sum(len(p) for p in inputs.prompts.values())
        if inputs.image is not None and prompt_count > settings.max_labels:
            raise InputError("error.sentiment.too_many_prompts", count=prompt_count, limit=settings.max_labels)
        if method == fusion.WEIGHTED_AVERAGE:
            fusion.check_weights(weights, inputs.modalities)  # before any model loads
        return inputs

    def model_set(self, spec: ModelSpec) -> Mapping[str, ModelSpec]:
        """The text model with the zero-shot and speech tabs' defaults: what a request giving all three inputs needs."""
        return {"text": spec, "image": _ZERO_SHOT.default_model, "speech": _SPEECH.default_model}

    def models_needed(self, inputs: SentimentInputs) -> Mapping[str, ModelSpec]:
        """Only what this request uses: the text model reads the text and the transcript, CLIP the image."""
        needed: dict[str, ModelSpec] = {}
        if inputs.text_model is not None and (inputs.text is not None or inputs.audio is not None):
            needed["text"] = inputs.text_model
        if inputs.image is not None:
            needed["image"] = inputs.image_model
        if inputs.audio is not None:
            needed["speech"] = inputs.speech_model
        return needed

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: SentimentInputs) -> dict[str, Any]:
        text_bundle = bundles.get("text")
        probs: dict[str, tuple[float, ...]] = {}
        transcript = explanation = None
        if inputs.text is not None and inputs.explain:  # one forward pass gives the verdict and its explanation
            probs["text"], explanation = classify_and_explain_text(text_bundle, inputs.text)
        elif inputs.text is not None:
            probs["text"] = classify_text(text_bundle, inputs.text)
        if inputs.image is not None:
            probs["image"] = classify_image(bundles["image"], inputs.image, inputs.prompts)
        if inputs.audio is not None:
            transcript = transcribe_clip(bundles["speech"], inputs.audio)
            probs["speech"] = classify_text(text_bundle, transcript)
        fused = fusion.fuse(inputs.method, probs, inputs.weights)
        return {
            "probs": probs,
            "fused": fused,
            "ablation": fusion.leave_one_out(inputs.method, probs, inputs.weights),
            "contributions": fusion.contributions(fused, probs),
            "transcript": transcript,
            "sst2": text_bundle is not None and _is_two_class(text_bundle),
            "explanation": explanation,
        }

    def format(self, output: dict[str, Any], inputs: SentimentInputs) -> dict[str, Any]:
        probs, fused = output["probs"], output["fused"]
        rows = []
        for modality, p in probs.items():
            row = {
                "modality": modality,
                "label": LABELS[fusion.argmax(p)],
                "probabilities": _by_label(p),
                "weight": fused.weights[modality],
                "certainty": fusion.certainty(p),
            }
            if modality == "speech":
                row["transcript"] = output["transcript"]
            rows.append(row)
        ablation = []
        for modality, rest in output["ablation"].items():
            ablation.append({
                "without": modality,
                "label": LABELS[fusion.argmax(rest.probabilities)] if rest else None,
                "probabilities": _by_label(rest.probabilities) if rest else None,
            })
        text_backend = VADER if inputs.text_model is None else inputs.text_model.id
        reads_text = "text" in probs or "speech" in probs
        notes = []
        if reads_text and inputs.text_model is None:
            notes.append(VADER_MAPPING_NOTE)
        elif reads_text and output["sst2"]:
            notes.append(SST2_MAPPING_NOTE)
        return {
            "label": LABELS[fusion.argmax(fused.probabilities)],
            "probabilities": _by_label(fused.probabilities),
            "method": inputs.method,
            "modalities": rows,
            "contributions": {m: _by_label(c) for m, c in output["contributions"].items()},
            "ablation": ablation,
            "transcript": output["transcript"],
            "text_backend": text_backend if reads_text else None,
            "notes": notes,
            "image_prompts": {label: list(p) for label, p in inputs.prompts.items()} if "image" in probs else None,
            **({"explanation": output["explanation"]} if output.get("explanation") else {}),
        }

    def compare_view(self, result: Mapping[str, Any]) -> Comparable:
        ranking = tuple(sorted(result["probabilities"].items(), key=lambda item: -item[1]))
        verdicts = tuple(f"{row['modality']}: {row['label']} ({max(row['probabilities'].values()):.2f})"
                         for row in result["modalities"])
        return Comparable(result["label"], ranking=ranking, details=verdicts)

    def gpu_seconds(self, inputs: SentimentInputs) -> float:
        """What each given modality costs: a text classifier pass, the image prompts, the transcription."""
        seconds = GPU_SETUP_SECONDS + 2.0
        if inputs.image is not None:
            seconds += 2.0 + GPU_SECONDS_PER_PROMPT * sum(len(p) for p in inputs.prompts.values())
        if inputs.audio is not None:
            seconds += transcription_gpu_seconds(inputs.audio.duration)
        if inputs.explain:
            seconds += 2.0  # the text again, one forward and one backward pass (attributions.gradient_x_input)
        return seconds


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _by_label(p: Sequence[float]) -> dict[str, float]:
    return {label: float(x) for label, x in zip(LABELS, p)}


# ---------------------------------------------------------------- text


def sst2_to_three(p_negative: float, p_positive: float,
                  neutral_below: float = SST2_NEUTRAL_BELOW) -> tuple[float, float, float]:
    """A 2-class (negative, positive) verdict as (negative, neutral, positive); neutral from low confidence.

    With t = `neutral_below` and P(minority) = min(p_negative, p_positive):
        neutral = min(1, P(minority) · t / (1 − t²)),  negative = (1 − neutral) p_negative,
        positive = (1 − neutral) p_positive.
    The factor t / (1 − t²) makes neutral the top class exactly when the model's top probability is below t
    (at t: neutral = t / (1 + t) = t (1 − neutral)). With t = 0.75: P(positive) 0.5 gives (0.07, 0.86, 0.07),
    0.75 a tie between neutral and positive, 0.99 about (0.01, 0.02, 0.97). Both classes keep some mass,
    so a product of experts is never vetoed by the mapping.
    """
    if not 0.5 < neutral_below < 1:
        raise ValueError(f"neutral_below must be in (0.5, 1), got {neutral_below}")
    total = p_negative + p_positive
    p_negative, p_positive = p_negative / total, p_positive / total
    neutral = min(1.0, min(p_negative, p_positive) * neutral_below / (1 - neutral_below**2))
    return (1 - neutral) * p_negative, neutral, (1 - neutral) * p_positive


def vader_to_three(compound: float) -> tuple[float, float, float]:
    """VADER's compound score c in [-1, 1] as (negative, neutral, positive) = softmax(s·(−c, b, c)).

    b = VADER_NEUTRAL_BAND makes neutral the top class exactly when |c| < b (VADER's own rule);
    s = VADER_SHARPNESS sets how sure a strong score looks.
    """
    logits = [-compound, VADER_NEUTRAL_BAND, compound]
    top = max(logits)
    exps = [math.exp(VADER_SHARPNESS * (z - top)) for z in logits]
    total = sum(exps)
    return tuple(e / total for e in exps)  # type: ignore[return-value]


_vader_lock = threading.Lock()
_vader_analyzer = None


def vader_analyzer():
    """The one VADER analyzer of this process, built on first use (it reads its lexicon file)."""
    global _vader_analyzer
    with _vader_lock:
        if _vader_analyzer is None:
            try:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
            except ImportError as e:
                raise ModelUnavailableError("error.sentiment.vader_missing") from e
            _vader_analyzer = SentimentIntensityAnalyzer()
        return _vader_analyzer


def _three_class_order(id2label: Mapping[int, str]) -> tuple[int, ...]:
    """The model's class indices in LABELS order (2 for a negative/positive model), or ModelUnavailableError."""
    names = {str(name).strip().lower(): int(index) for index, name in id2label.items()}
    if set(names) == set(LABELS):
        return tuple(names[label] for label in LABELS)
    if set(names) == {"negative", "positive"}:
        return names["negative"], names["positive"]
    raise ModelUnavailableError("error.sentiment.classes", classes=sorted(names))


def _is_two_class(bundle: ModelBundle) -> bool:
    return len(_three_class_order(bundle.model.config.id2label)) == 2


def classify_text(bundle: ModelBundle | None, text: str) -> tuple[float, float, float]:
    """(negative, neutral, positive) for `text`: the classifier in `bundle`, or VADER when it is None.

    An empty text (a recording without recognised speech) carries no sentiment: uniform.
    """
    if not text.strip():
        return (1 / 3, 1 / 3, 1 / 3)
    if bundle is None:
        return vader_to_three(vader_analyzer().polarity_scores(text)["compound"])
    tokenizer = bundle.processor
    max_length = min(TEXT_MAX_TOKENS, getattr(tokenizer, "model_max_length", TEXT_MAX_TOKENS))
    batch = bundle.prepare(tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt"))
    probs = bundle.model(**batch).logits.float().softmax(dim=-1)[0].tolist()
    order = _three_class_order(bundle.model.config.id2label)
    if len(order) == 2:
        return sst2_to_three(probs[order[0]], probs[order[1]])
    return tuple(probs[i] for i in order)  # type: ignore[return-value]


def _to_three(p: Sequence[Any], order: Sequence[int]) -> tuple[Any, Any, Any]:
    """A model's class probabilities (floats, or 0-d tensors that autograd follows) as (negative, neutral,
    positive)."""
    if len(order) == 2:
        return sst2_to_three(p[order[0]], p[order[1]])
    return tuple(p[i] for i in order)  # type: ignore[return-value]


def classify_and_explain_text(bundle: ModelBundle | None, text: str) -> tuple[tuple[float, float, float],
                                                                             dict[str, Any]]:
    """The text's (negative, neutral, positive), as `classify_text` gives it, and each word's part in the verdict:
    gradient × input for a classifier, from the same forward pass that gives the probabilities plus one backward
    pass (occlusion where the tokenizer cannot map tokens back to characters); VADER's lexicon scores for VADER.
    """
    from mmdemo.explain import attributions, grads

    if bundle is None:
        words, note = attributions.vader_words(text, vader_analyzer().lexicon)
        return classify_text(None, text), {"method": "vader-lexicon", "note": note, "words": words}
    order = _three_class_order(bundle.model.config.id2label)
    tokenizer = bundle.processor
    max_length = min(TEXT_MAX_TOKENS, getattr(tokenizer, "model_max_length", TEXT_MAX_TOKENS))
    if getattr(tokenizer, "is_fast", False) and text.strip():
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt",
                            return_offsets_mapping=True, return_special_tokens_mask=True)
        offsets = [tuple(span) for span in encoded.pop("offset_mapping")[0].tolist()]
        special = encoded.pop("special_tokens_mask")[0].tolist()

        def verdict_log_prob(logits: Any) -> Any:
            three = _to_three(logits.float().softmax(dim=-1), order)
            return three[fusion.argmax([float(p.detach()) for p in three])].log()

        # The transposed weights stay with the model, so the cache counts them (measured when the request ends).
        bundle.nbytes += grads.keep_transposed_weights(bundle.model)
        words, note, logits = attributions.gradient_x_input(text, bundle.model, bundle.prepare(encoded), offsets,
                                                            special, verdict_log_prob)
        probs = _to_three(logits.float().softmax(dim=-1).tolist(), order)
        method = "gradient-x-input"
    else:
        probs = classify_text(bundle, text)
        classify = attributions.batch_classifier(bundle.model, tokenizer, bundle.prepare, max_length,
                                                 lambda p: _to_three(p, order))
        words, note = attributions.occlusion(text, classify, fusion.argmax(probs))
        method = "occlusion"
    label = fusion.argmax(probs)
    return probs, {"method": method, "note": f"{note} (the verdict: {LABELS[label]})", "words": words,
                   "label": LABELS[label]}


# ---------------------------------------------------------------- image


def classify_image(bundle: ModelBundle, image: Image.Image,
                   prompts: Mapping[str, tuple[str, ...]]) -> tuple[float, float, float]:
    """(negative, neutral, positive) for `image` from its zero-shot scores against each class's prompts.

    Every prompt is scored at once (score_labels, template "{}"); a class's probability is the mean of its
    prompts' scores, renormalized over the classes, so a class with more prompts gets no extra mass.
    """
    flat = tuple(prompt for label in LABELS for prompt in prompts[label])
    scores = score_labels(bundle, image, flat, ("{}",)).tolist()
    means, start = [], 0
    for label in LABELS:
        count = len(prompts[label])
        means.append(sum(scores[start:start + count]) / count)
        start += count
    total = sum(means)
    return tuple(m / total for m in means)  # type: ignore[return-value]
