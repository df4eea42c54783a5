"""Image captioning: an image (and optionally the caption's first words) in, one or more captions out."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.explain.grads import explain_flag
from mmdemo.i18n import Message, has
from mmdemo.media import load_image
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import (
    GPU_SETUP_SECONDS,
    Comparable,
    ModelSpec,
    Task,
    clean_text,
    image_pixels,
    stacked_pixels,
)

DECODING_MODES = ("beam", "sample")
# Sampling seeds torch's global generator; one sampling request at a time keeps seeds reproducible.
_SAMPLING_LOCK = threading.Lock()
# GPU time per new token of one beam or sample: a few times what BLIP large takes on a whole H200, since a ZeroGPU
# slice is slower (`python -m benchmarks.gpu_seconds`; docs/spaces.md).
GPU_SECONDS_PER_TOKEN = 0.01
EXPLAIN_GPU_SECONDS = 3.0  # the explain pass: the caption's decoder again, one row per word, with a backward pass
# The captioners whose maps the explain pass computes (mmdemo.explain.gradcam); others answer with a note.
EXPLAINED_ARCHITECTURES = ("BlipForConditionalGeneration", "GitForCausalLM")


@dataclass(frozen=True)
class CaptionOptions:
    mode: str = "beam"  # "beam" search or nucleus "sample"-ing
    num_beams: int = 3  # beam width (beam mode)
    top_p: float = 0.9  # nucleus mass (sample mode)
    temperature: float = 1.0  # softmax temperature (sample mode)
    seed: int = 0  # random seed (sample mode)
    max_new_tokens: int = 30  # longest caption, in tokens
    num_captions: int = 1  # distinct captions to return, 1-5


@dataclass(frozen=True)
class CaptionInputs:
    model: ModelSpec
    image: Image.Image
    prefix: str
    options: CaptionOptions
    explain: bool = False  # also compute one map per word of the first caption
    pixel_values: np.ndarray | None = field(default=None, compare=False, repr=False)  # set by preprocess


def _number(raw: Mapping[str, Any], name: str, default: float, low: float, high: float, kind: type = int) -> Any:
    value = raw.get(name)
    if value is None or value == "":
        return default
    key = f"error.captioning.setting.{name}"
    setting = Message(key) if has(key) else name.replace("_", " ").capitalize()
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise InputError("error.captioning.not_a_number", setting=setting, value=value) from None
    if not low <= number <= high:
        raise InputError("error.captioning.out_of_range", setting=setting, low=low, high=high, value=value)
    return number


class CaptioningTask(Task[CaptionInputs]):
    name = "captioning"
    title = "Image captioning"
    description = "Describe an image in a sentence; give the first words to steer the caption."
    models = (
        ModelSpec("Salesforce/blip-image-captioning-base", note="BLIP base"),
        ModelSpec("Salesforce/blip-image-captioning-large", note="BLIP large, more detailed, slower"),
        ModelSpec("microsoft/git-base-coco", note="GIT base fine-tuned on COCO"),
        ModelSpec("nlpconnect/vit-gpt2-image-captioning", note="ViT encoder + GPT-2 decoder"),
    )
    architectures = frozenset({"BlipForConditionalGeneration", "GitForCausalLM", "VisionEncoderDecoderModel"})
    serve_family = "vision_language"

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> CaptionInputs:
        mode = str(raw.get("mode") or "beam").strip().lower()
        if mode not in DECODING_MODES:
            raise InputError("error.captioning.unknown_mode", mode=mode, choices=" or ".join(DECODING_MODES))
        options = CaptionOptions(
            mode=mode,
            num_beams=_number(raw, "num_beams", 3, 1, 8),
            top_p=_number(raw, "top_p", 0.9, 0.05, 1.0, float),
            temperature=_number(raw, "temperature", 1.0, 0.1, 2.0, float),
            seed=_number(raw, "seed", 0, 0, 2**31 - 1),
            max_new_tokens=_number(raw, "max_new_tokens", 30, 5, 100),
            num_captions=_number(raw, "num_captions", 1, 1, 5),
        )
        return CaptionInputs(
            model=self.model_spec(raw.get("model"), allow_custom=settings.allow_custom_models),
            image=load_image(raw.get("image"), max_pixels=settings.max_image_pixels),
            prefix=clean_text(raw.get("prefix"), what=Message("error.field.prefix"), max_chars=200, required=False),
            options=options,
            explain=explain_flag(raw.get("explain")),
        )

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: CaptionInputs) -> list[str] | dict[str, Any]:
        return self.predict_batch(bundles, [inputs])[0]

    def preprocess(self, bundles: Mapping[str, ModelBundle], inputs: CaptionInputs) -> CaptionInputs:
        """The image's pixel values, made in the request's own thread (see Task.preprocess)."""
        return replace(inputs, pixel_values=image_pixels(bundles["model"], [inputs.image]))

    def batch_key(self, inputs: CaptionInputs) -> Hashable | None:
        """Beam-search requests with the same model, prefix and options share one generate() call."""
        if inputs.options.mode != "beam" or inputs.explain:
            return None  # a seeded sample must not depend on who else asked at the same time; explain runs alone
        return (inputs.model, inputs.prefix, inputs.options)

    def predict_batch(self, bundles: Mapping[str, ModelBundle], batch: Sequence[CaptionInputs]) -> list[list[str]]:
        from mmdemo.models.generation import cache_kwargs  # imports transformers: not at start-up

        bundle = bundles["model"]
        if len(batch) == 1 and batch[0].explain:
            return [explained_captions(self, bundle, batch[0])]
        options = batch[0].options  # equal within a batch (batch_key)
        model_inputs = _model_inputs(bundle, stacked_pixels(bundle, batch), batch[0].prefix)
        wanted = options.num_captions
        if options.mode == "beam":
            per_image = max(options.num_beams, wanted)
            kwargs = {"num_beams": per_image, "num_return_sequences": per_image, "do_sample": False}
        else:
            # Ask for extra samples: duplicates are dropped below.
            per_image = min(2 * wanted, 10)
            kwargs = {"do_sample": True, "top_p": options.top_p, "temperature": options.temperature,
                      "top_k": 0, "num_beams": 1, "num_return_sequences": per_image}
        kwargs["max_new_tokens"] = options.max_new_tokens
        kwargs.update(cache_kwargs(bundle.architecture))
        if options.mode == "sample":
            with _SAMPLING_LOCK:
                torch.manual_seed(options.seed)
                sequences = bundle.model.generate(**model_inputs, **kwargs)
        else:
            sequences = bundle.model.generate(**model_inputs, **kwargs)
        tokenizer = bundle.tokenizer or bundle.processor
        texts = [" ".join(text.split()) for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        # generate() returns each image's sequences together, best first.
        return [_distinct(texts[i * per_image:(i + 1) * per_image])[:wanted] for i in range(len(batch))]

    def format(self, output: list[str] | dict[str, Any], inputs: CaptionInputs) -> dict[str, Any]:
        explanation = output.get("explanation") if isinstance(output, dict) else None
        captions = output["captions"] if isinstance(output, dict) else output
        result = {"captions": captions, "caption": captions[0] if captions else "", "prefix": inputs.prefix,
                  "decoding": inputs.options.mode}
        if explanation is not None:
            result["explanation"] = explanation
        return result

    def compare_view(self, result: Mapping[str, Any]) -> Comparable:
        return Comparable(result["caption"], words=True, details=tuple(result["captions"][1:]))

    def gpu_seconds(self, inputs: CaptionInputs) -> float:
        """Image encoding plus max_new_tokens decoding steps of every beam or sample (see predict_batch)."""
        options = inputs.options
        if options.mode == "beam":
            sequences = max(options.num_beams, options.num_captions)
        else:
            sequences = min(2 * options.num_captions, 10)
        explain = EXPLAIN_GPU_SECONDS if inputs.explain else 0.0
        return GPU_SETUP_SECONDS + 2.0 + GPU_SECONDS_PER_TOKEN * options.max_new_tokens * sequences + explain


def _model_inputs(bundle: ModelBundle, pixel_values: torch.Tensor, prefix: str) -> dict[str, Any]:
    """Pixel values plus the prefix as the decoder's start, in each architecture's own way."""
    count = len(pixel_values)
    batch: dict[str, Any] = {"pixel_values": pixel_values}
    if bundle.architecture in ("VisionEncoderDecoderModel", "GitForCausalLM"):
        if prefix:
            ids = bundle.tokenizer(prefix, add_special_tokens=False).input_ids
            if bundle.architecture == "VisionEncoderDecoderModel":
                batch["decoder_input_ids"] = torch.tensor([[bundle.model.config.decoder_start_token_id, *ids]] * count)
            else:
                batch["input_ids"] = torch.tensor([[bundle.tokenizer.cls_token_id, *ids]] * count)
        return bundle.prepare(batch)
    # BLIP: conditional captioning takes the prefix as text (the processor's text part, as it tokenizes it with images).
    if prefix:
        batch.update(bundle.processor(text=[prefix] * count, return_tensors="pt"))
    return bundle.prepare(batch)


def _distinct(texts: list[str]) -> list[str]:
    """Drop empty and repeated captions (case-insensitive), keeping the model's order."""
    seen: set[str] = set()
    kept = []
    for text in texts:
        key = text.lower().strip(" .")
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def explained_captions(task: CaptioningTask, bundle: ModelBundle, inputs: CaptionInputs) -> dict[str, Any]:
    """The captions as `predict_batch` gives them, plus one map per word of the first (mmdemo.explain.gradcam)."""
    from mmdemo.explain import gradcam
    from mmdemo.explain.grads import NO_MAPS

    plain = replace(inputs, explain=False)
    if bundle.architecture not in EXPLAINED_ARCHITECTURES:
        captions = task.predict_batch({"model": bundle}, [plain])[0]
        note = NO_MAPS.format(architecture=bundle.architecture) + "; pick a BLIP or GIT model"
        return {"captions": captions, "explanation": {"method": None, "note": note, "maps": []}}
    if bundle.architecture == "GitForCausalLM":
        captions = task.predict_batch({"model": bundle}, [plain])[0]
        source = stacked_pixels(bundle, [inputs])
    else:
        capture = gradcam.capture_image_embeds(bundle.model.text_decoder)
        with capture.during():
            captions = task.predict_batch({"model": bundle}, [plain])[0]
        source = capture.value
    maps = gradcam.caption_maps(bundle, source, captions[0]) if captions else []
    note = "GradCAM of each word's probability on the decoder's attention to the image (first caption)"
    return {"captions": captions, "explanation": {"method": "gradcam", "note": note, "maps": maps}}
