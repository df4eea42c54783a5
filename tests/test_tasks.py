"""Each task end to end through the real loading code on tiny local checkpoints, and parity with
calling the same checkpoint directly with transformers on the same input."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import transformers
from PIL import Image

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import registry
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.errors import InputError, ModelUnavailableError
from mmdemo.media import load_image
from mmdemo.media.pixels import reduce_for
from mmdemo.runtime import Runtime

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = ASSETS / "skimage_chelsea.png"
COFFEE = ASSETS / "skimage_coffee.png"
SPEECH_16K = ASSETS / "librispeech_61-70968-0002.wav"  # 16 kHz mono: no resampling between app and reference


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path, tiny_runtime) -> Runtime:
    # fp32 everywhere, so that results equal the direct transformers calls exactly.
    return tiny_runtime(quantize="none")


def reference(tiny_model_dir: Path, model_id: str, cls: type, processor_cls: type = transformers.AutoProcessor):
    path = tiny_model_dir / model_id
    return cls.from_pretrained(path).eval(), processor_cls.from_pretrained(path)


def rgb(path: Path) -> Image.Image:
    return load_image(str(path))


def app_image(processor, path: Path) -> Image.Image:
    """The image as the tasks hand it to `processor`: decoded, then reduced for it (`tests/test_pixels.py` holds
    the reduction within a grey level of the processor's own resize)."""
    return reduce_for(processor, rgb(path))


# -- visual question answering ------------------------------------------------------------------


def test_blip_vqa_matches_direct_generate(runtime, tiny_model_dir):
    result = runtime.run("vqa", {"image": str(CAT), "question": "what animal is this?",
                                 "model": "Salesforce/blip-vqa-base"})
    model, processor = reference(tiny_model_dir, "Salesforce/blip-vqa-base", transformers.BlipForQuestionAnswering)
    with torch.inference_mode():
        batch = processor(images=app_image(processor, CAT), text="what animal is this?", return_tensors="pt")
        ids = model.generate(**batch, max_new_tokens=20)
    expected = processor.decode(ids[0], skip_special_tokens=True).strip()
    assert expected
    assert result["answer"] == expected
    assert result["answers"] == [{"answer": expected, "score": None}]
    assert result["provenance"]["models"] == {"model": "Salesforce/blip-vqa-base"}
    assert result["provenance"]["device"] == "cpu" and result["provenance"]["dtype"] == "float32"
    assert result["provenance"]["ms"] > 0


def test_vilt_returns_top5_answers_matching_direct_logits(runtime, tiny_model_dir):
    result = runtime.run("vqa", {"image": str(COFFEE), "question": "what is in the cup?",
                                 "model": "dandelin/vilt-b32-finetuned-vqa"})
    model, processor = reference(tiny_model_dir, "dandelin/vilt-b32-finetuned-vqa",
                                 transformers.ViltForQuestionAnswering)
    with torch.inference_mode():
        logits = model(**processor(images=app_image(processor, COFFEE), text="what is in the cup?",
                                     return_tensors="pt")).logits[0]
    scores, indices = logits.sigmoid().topk(5)
    assert [a["answer"] for a in result["answers"]] == [model.config.id2label[int(i)] for i in indices]
    assert [a["score"] for a in result["answers"]] == pytest.approx(scores.tolist(), abs=1e-5)
    assert result["answer"] == result["answers"][0]["answer"]


def test_vqa_refuses_missing_image_and_empty_question(runtime):
    with pytest.raises(InputError, match="No image"):
        runtime.run("vqa", {"image": None, "question": "what?"})
    with pytest.raises(InputError, match="Question is empty"):
        runtime.run("vqa", {"image": str(CAT), "question": "   "})


# -- captioning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "cls"),
    [
        ("Salesforce/blip-image-captioning-base", transformers.BlipForConditionalGeneration),
        ("microsoft/git-base-coco", transformers.GitForCausalLM),
    ],
)
def test_caption_matches_direct_beam_search(runtime, tiny_model_dir, model_id, cls):
    result = runtime.run("captioning", {"image": str(CAT), "model": model_id, "num_beams": 3,
                                        "max_new_tokens": 12})
    model, processor = reference(tiny_model_dir, model_id, cls)
    with torch.inference_mode():
        pixels = processor(images=app_image(processor, CAT), return_tensors="pt").pixel_values
        ids = model.generate(pixel_values=pixels, num_beams=3, num_return_sequences=3, max_new_tokens=12,
                             do_sample=False)
    expected = " ".join(processor.batch_decode(ids, skip_special_tokens=True)[0].split())
    assert expected
    assert result["caption"] == expected
    assert result["captions"] == [expected]


def test_vit_gpt2_caption_matches_direct_generate(runtime, tiny_model_dir):
    model_id = "nlpconnect/vit-gpt2-image-captioning"
    result = runtime.run("captioning", {"image": str(COFFEE), "model": model_id, "num_beams": 2,
                                        "max_new_tokens": 10})
    path = tiny_model_dir / model_id
    model = transformers.VisionEncoderDecoderModel.from_pretrained(path).eval()
    image_processor = transformers.AutoImageProcessor.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    with torch.inference_mode():
        pixels = image_processor(images=app_image(image_processor, COFFEE), return_tensors="pt").pixel_values
        ids = model.generate(pixel_values=pixels, num_beams=2, num_return_sequences=2, max_new_tokens=10,
                             do_sample=False)
    expected = " ".join(tokenizer.batch_decode(ids, skip_special_tokens=True)[0].split())
    assert result["caption"] == expected


def test_caption_prefix_starts_the_caption(runtime):
    for model_id in ("Salesforce/blip-image-captioning-base", "microsoft/git-base-coco",
                     "nlpconnect/vit-gpt2-image-captioning"):
        result = runtime.run("captioning", {"image": str(CAT), "model": model_id, "prefix": "a photo of",
                                            "max_new_tokens": 8})
        assert result["caption"].lower().startswith("a photo of"), (model_id, result["caption"])


def test_several_captions_are_distinct_and_sampling_is_seeded(runtime):
    beams = runtime.run("captioning", {"image": str(CAT), "num_captions": 3, "num_beams": 4, "max_new_tokens": 10})
    assert 1 <= len(beams["captions"]) <= 3
    assert len({c.lower() for c in beams["captions"]}) == len(beams["captions"])
    raw = {"image": str(CAT), "mode": "sample", "top_p": 0.9, "temperature": 1.5, "seed": 7, "num_captions": 2,
           "max_new_tokens": 10}
    first, second = runtime.run("captioning", raw), runtime.run("captioning", raw)
    assert first["captions"] == second["captions"]
    other = runtime.run("captioning", {**raw, "seed": 8})
    assert other["decoding"] == "sample"


def test_caption_option_errors_name_the_field(runtime):
    with pytest.raises(InputError, match="Num beams must be between 1 and 8"):
        runtime.run("captioning", {"image": str(CAT), "num_beams": 50})
    with pytest.raises(InputError, match="Unknown decoding mode"):
        runtime.run("captioning", {"image": str(CAT), "mode": "greedy-ish"})


# -- zero-shot classification -------------------------------------------------------------------


def test_clip_scores_match_direct_forward(runtime, tiny_model_dir):
    labels = ["cat", "dog", "cup of coffee"]
    result = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog,\ncup of coffee",
                                       "model": "openai/clip-vit-base-patch32"})
    model, processor = reference(tiny_model_dir, "openai/clip-vit-base-patch32", transformers.CLIPModel)
    prompts = [f"a photo of a {label}." for label in labels]
    with torch.inference_mode():
        batch = processor(text=prompts, images=app_image(processor, CAT), padding=True, return_tensors="pt")
        logits = model(**batch).logits_per_image
    expected = dict(zip(labels, logits.softmax(-1)[0].tolist()))
    got = {item["label"]: item["score"] for item in result["labels"]}
    assert got == pytest.approx(expected, abs=1e-5)
    assert [item["score"] for item in result["labels"]] == sorted(got.values(), reverse=True)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    assert result["scoring"] == "softmax"


def test_siglip_scores_are_independent_sigmoids_matching_direct_forward(runtime, tiny_model_dir):
    labels = ["cat", "dog"]
    result = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat\ndog",
                                       "model": "google/siglip-base-patch16-224", "template": "a photo of a {}."})
    model, processor = reference(tiny_model_dir, "google/siglip-base-patch16-224", transformers.SiglipModel)
    prompts = [f"a photo of a {label}." for label in labels]
    with torch.inference_mode():
        batch = processor(text=prompts, images=app_image(processor, CAT), padding="max_length", return_tensors="pt")
        logits = model(**batch).logits_per_image
    expected = dict(zip(labels, logits.sigmoid()[0].tolist()))
    got = {item["label"]: item["score"] for item in result["labels"]}
    assert got == pytest.approx(expected, abs=1e-5)
    assert result["scoring"] == "sigmoid"


def test_template_ensemble_averages_label_embeddings(runtime):
    single = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog, bird"})
    ensemble = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog, bird", "ensemble": True})
    assert len(ensemble["templates"]) == 8 and single["templates"] == ["a photo of a {}."]
    assert sum(item["score"] for item in ensemble["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert {i["label"]: i["score"] for i in single["labels"]} != pytest.approx(
        {i["label"]: i["score"] for i in ensemble["labels"]}, abs=1e-6)


def test_label_prompts_are_encoded_once_per_loaded_model(tiny_model_dir, monkeypatch, tiny_runtime):
    """The text tower runs only for prompts the loaded model has not seen; the scores stay those of a full pass."""
    model, processor = reference(tiny_model_dir, "openai/clip-vit-base-patch32", transformers.CLIPModel)

    def direct(image: Path, labels: list[str]) -> dict[str, float]:
        prompts = [f"a photo of a {label}." for label in labels]
        with torch.inference_mode():
            batch = processor(text=prompts, images=app_image(processor, image), padding=True, return_tensors="pt")
            return dict(zip(labels, model(**batch).logits_per_image.softmax(-1)[0].tolist()))

    expected = [direct(CAT, ["cat", "dog", "cup of coffee"]), direct(COFFEE, ["cup of coffee", "cat", "dog"]),
                direct(CAT, ["dog", "horse"])]
    encoded: list[int] = []  # prompts per pass of the app's text tower
    text_features = transformers.CLIPModel.get_text_features

    def counting(self, input_ids=None, **kwargs):
        encoded.append(len(input_ids))
        return text_features(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(transformers.CLIPModel, "get_text_features", counting)
    runtime = tiny_runtime(quantize="none")

    def scores(image: Path, labels: str) -> dict[str, float]:
        result = runtime.run("zero_shot", {"image": str(image), "labels": labels})
        return {item["label"]: item["score"] for item in result["labels"]}

    assert scores(CAT, "cat, dog, cup of coffee") == pytest.approx(expected[0], abs=1e-5)
    assert encoded == [3]
    assert scores(COFFEE, "cup of coffee, cat, dog") == pytest.approx(expected[1], abs=1e-5)
    assert encoded == [3]  # same prompts, another image: no text pass
    assert scores(CAT, "dog, horse") == pytest.approx(expected[2], abs=1e-5)
    assert encoded == [3, 1]  # only "a photo of a horse."
    runtime.unload("openai/clip-vit-base-patch32")  # the embeddings leave with the model
    assert scores(CAT, "dog, horse") == pytest.approx(expected[2], abs=1e-5)
    assert encoded == [3, 1, 2]


@pytest.mark.parametrize(
    ("labels", "message"),
    [("cat", "at least 2 different labels"), (" , ,\n", "at least 2"), ("cat, Cat , CAT", "at least 2"),
     (",".join(f"label{i}" for i in range(51)), "51 labels given; the limit is 50")],
)
def test_label_errors(runtime, labels, message):
    with pytest.raises(InputError, match=message):
        runtime.run("zero_shot", {"image": str(CAT), "labels": labels})


def test_labels_are_deduplicated_and_template_checked(runtime):
    result = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog, cat,, Dog\nbird"})
    assert sorted(item["label"] for item in result["labels"]) == ["bird", "cat", "dog"]
    with pytest.raises(InputError, match="must contain {} exactly once"):
        runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog", "template": "a photo"})


# -- speech -------------------------------------------------------------------------------------


def test_whisper_transcript_matches_direct_generate(runtime, tiny_model_dir):
    result = runtime.run("speech", {"audio": str(SPEECH_16K), "model": "openai/whisper-base", "timestamps": "none",
                                    "language": "en"})
    model, processor = reference(tiny_model_dir, "openai/whisper-base", transformers.WhisperForConditionalGeneration)
    samples, rate = soundfile.read(SPEECH_16K, dtype="float32")
    assert rate == 16_000
    with torch.inference_mode():
        features = processor.feature_extractor(samples, sampling_rate=16_000, return_tensors="pt",
                                               return_attention_mask=True)
        ids = model.generate(input_features=features.input_features, attention_mask=features.attention_mask,
                             language="en", task="transcribe")
    expected = processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    assert result["text"] == expected
    assert result["duration"] == pytest.approx(len(samples) / 16_000, abs=1e-3)
    assert result["downloads"]["txt"] == expected + "\n"
    assert result["language"] == "en" and result["task"] == "transcribe"


def test_segment_timestamps_and_subtitle_downloads(runtime):
    result = runtime.run("speech", {"audio": str(ASSETS / "jfk.flac"), "timestamps": "segment"})
    # Random weights may emit only timestamp tokens; real weights are checked in the acceptance tests.
    assert result["text"] == " ".join(s["text"] for s in result["segments"])
    for segment in result["segments"]:
        assert 0.0 <= segment["start"] <= segment["end"] <= result["duration"] + 1e-6
        assert segment["text"]
    srt, vtt = result["downloads"]["srt"], result["downloads"]["vtt"]
    assert srt.count(" --> ") == vtt.count(" --> ") == len(result["segments"])
    assert vtt.startswith("WEBVTT\n\n")


def test_word_timestamps(runtime):
    result = runtime.run("speech", {"audio": str(SPEECH_16K), "timestamps": "word",
                                    "model": "openai/whisper-base"})
    assert "words" in result
    for word in result["words"]:
        assert 0.0 <= word["start"] <= word["end"]


def test_long_audio_is_transcribed_past_30_seconds(runtime, tmp_path):
    rate = 16_000
    rng = np.random.default_rng(0)
    clip = np.concatenate([soundfile.read(SPEECH_16K, dtype="float32")[0]] * 13)  # ~38.6 s
    clip = clip + rng.normal(0, 1e-3, clip.shape).astype(np.float32)
    path = tmp_path / "long.wav"
    soundfile.write(path, clip, rate)
    task = registry.get("speech")
    with runtime.predictor.bundles(task, {"model": task.model_spec("openai/whisper-base")}) as bundles:
        encoder = bundles["model"].model.get_encoder()
    windows = []
    hook = encoder.register_forward_hook(
        lambda module, args, kwargs, output: windows.append((args or [kwargs["input_features"]])[0].shape[-1]),
        with_kwargs=True)
    try:
        result = runtime.run("speech", {"audio": str(path), "timestamps": "none", "model": "openai/whisper-base",
                                        "language": "en"})
    finally:
        hook.remove()
    assert result["duration"] == pytest.approx(len(clip) / rate, abs=1e-3)
    # Sequential long-form decoding: the encoder saw more than one 30 s window of 3000 frames.
    assert len(windows) >= 2 and set(windows) == {3000}


def test_english_only_model_refuses_other_languages(runtime):
    with pytest.raises(InputError, match="only understands English"):
        runtime.run("speech", {"audio": str(SPEECH_16K), "model": "distil-whisper/distil-small.en",
                               "language": "fr"})
    with pytest.raises(InputError, match="Unknown language"):
        runtime.run("speech", {"audio": str(SPEECH_16K), "language": "klingon"})


def test_speech_input_errors(runtime, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(InputError, match="silent"):
        runtime.run("speech", {"audio": str(silent)})
    with pytest.raises(InputError, match="No audio"):
        runtime.run("speech", {"audio": None})
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(InputError, match="not audio"):
        runtime.run("speech", {"audio": str(text)})


# -- models and the cache -----------------------------------------------------------------------


def test_unknown_model_lists_the_choices(runtime):
    with pytest.raises(InputError, match="choose one of Salesforce/blip-vqa-base"):
        runtime.run("vqa", {"image": str(CAT), "question": "what?", "model": "someone/else"})


def test_missing_model_names_the_id_and_how_to_provide_it(tmp_path):
    empty = local_runtime(Settings(model_dir=tmp_path, memory_budget=10**9, device="cpu"))
    with pytest.raises(ModelUnavailableError, match=r"Salesforce/blip-vqa-base is not available offline .*"
                                                     r"HF_HUB_OFFLINE is set.*put the checkpoint in"):
        empty.run("vqa", {"image": str(CAT), "question": "what is this?"})


def test_two_tasks_share_one_cache_entry(tiny_runtime):
    runtime = tiny_runtime()
    runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog"})
    runtime.preload("zero_shot")
    report = runtime.cache_report()
    assert [e["model"] for e in report["entries"]] == ["openai/clip-vit-base-patch32"]
    assert report["misses"] == 1 and report["hits"] == 1


def test_budget_evicts_the_coldest_model(tiny_runtime):
    probe = tiny_runtime()
    probe.preload("vqa")
    probe.preload("captioning")
    sizes = {e["model"]: e["bytes"] for e in probe.cache_report()["entries"]}
    budget = max(sizes.values()) + min(sizes.values()) // 2  # one of the two fits, not both
    runtime = tiny_runtime(memory_budget=budget)
    runtime.run("vqa", {"image": str(CAT), "question": "what is it?"})
    runtime.run("captioning", {"image": str(CAT)})
    report = runtime.cache_report()
    assert [e["model"] for e in report["entries"]] == ["Salesforce/blip-image-captioning-base"]
    assert report["evictions"] == 1 and report["used_bytes"] <= budget


def test_model_of_the_wrong_kind_is_refused(tiny_model_dir):
    settings = Settings(model_dir=tiny_model_dir, memory_budget=10**9, device="cpu", allow_custom_models=True)
    runtime = local_runtime(settings)
    with pytest.raises(ModelUnavailableError, match="cannot run a CLIPModel"):
        runtime.run("vqa", {"image": str(CAT), "question": "what?", "model": "openai/clip-vit-base-patch32"})


def test_auto_language_is_detected_and_reported_with_parity(runtime, tiny_model_dir):
    result = runtime.run("speech", {"audio": str(SPEECH_16K), "model": "openai/whisper-base", "timestamps": "none"})
    model, processor = reference(tiny_model_dir, "openai/whisper-base", transformers.WhisperForConditionalGeneration)
    samples, _ = soundfile.read(SPEECH_16K, dtype="float32")
    with torch.inference_mode():
        features = processor.feature_extractor(samples, sampling_rate=16_000, return_tensors="pt")
        detected = int(model.detect_language(input_features=features.input_features)[0])
        ids = model.generate(input_features=features.input_features)  # transformers detects on its own
    codes = {token_id: token.strip("<|>") for token, token_id in model.generation_config.lang_to_id.items()}
    assert result["language"] == codes[detected]
    assert result["text"] == processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    segmented = runtime.run("speech", {"audio": str(SPEECH_16K), "model": "openai/whisper-base",
                                       "timestamps": "segment"})
    assert segmented["language"] == codes[detected]


@pytest.mark.parametrize("native_bf16", [False, True])
def test_cpu_default_picks_each_models_measured_format(tiny_runtime, monkeypatch, native_bf16):
    """Whisper and ViLT fp16 weights, CLIP fp32; on a CPU that multiplies bf16 natively, ViLT and CLIP in bf16."""
    import mmdemo.models.formats

    monkeypatch.setattr(mmdemo.models.formats, "cpu_computes_bf16", lambda: native_bf16)
    runtime = tiny_runtime()
    speech = runtime.run("speech", {"audio": str(SPEECH_16K), "timestamps": "none"})
    clip = runtime.run("zero_shot", {"image": str(CAT), "labels": "cat, dog"})
    vilt = runtime.run("vqa", {"image": str(CAT), "question": "what?", "model": "dandelin/vilt-b32-finetuned-vqa"})
    expected = {"openai/whisper-base": "fp16-weights",
                "openai/clip-vit-base-patch32": "bfloat16" if native_bf16 else "float32",
                "dandelin/vilt-b32-finetuned-vqa": "bfloat16" if native_bf16 else "fp16-weights"}
    assert [r["provenance"]["dtype"] for r in (speech, clip, vilt)] == list(expected.values())
    assert {e["model"]: e["dtype"] for e in runtime.cache_report()["entries"]} == expected
    zero_shot = registry.get("zero_shot")
    with runtime.predictor.bundles(zero_shot, {"model": zero_shot.default_model}) as bundles:
        assert bundles["model"].dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    everything = tiny_runtime(quantize="fp16")
    assert everything.run("zero_shot", {"image": str(CAT), "labels": "cat, dog"})["provenance"]["dtype"] == (
        "fp16-weights")
    with pytest.raises(ValueError, match="Unknown quantize setting 'int4': choose auto, int8, fp16, bf16, none"):
        tiny_runtime(memory_budget=10**9, quantize="int4")


def test_an_explicit_dtype_on_cpu_is_not_quantized(tiny_runtime, monkeypatch):
    import mmdemo.models.formats

    monkeypatch.setattr(mmdemo.models.formats, "cpu_computes_bf16", lambda: True)
    runtime = tiny_runtime(dtype="bfloat16")
    speech = runtime.run("speech", {"audio": str(SPEECH_16K), "timestamps": "none"})
    assert speech["provenance"]["dtype"] == "bfloat16"  # not int8 layers on a bf16 model


@pytest.mark.parametrize(("task", "raw", "model_id"), [
    ("vqa", {"image": str(CAT), "question": "what is on the sofa?"}, "dandelin/vilt-b32-finetuned-vqa"),
    ("zero_shot", {"image": str(COFFEE), "labels": "cat, dog, cup of coffee, plate"}, "openai/clip-vit-base-patch32"),
])
def test_bf16_models_keep_the_fp32_scores_to_bf16_precision(tiny_runtime, task, raw, model_id):
    """The whole model in bf16 (a GPU's precision): every score within 2e-2 of fp32's, the top one the same."""
    def scores(quantize: str) -> dict[str, float]:
        runtime = tiny_runtime(quantize=quantize)
        result = runtime.run(task, {**raw, "model": model_id})
        assert result["provenance"]["dtype"] == ("float32" if quantize == "none" else "bfloat16")
        if task == "vqa":
            return {item["answer"]: item["score"] for item in result["answers"]}
        return {item["label"]: item["score"] for item in result["labels"]}

    exact, bf16 = scores("none"), scores("bf16")
    assert max(exact, key=exact.get) == max(bf16, key=bf16.get)
    common = set(exact) & set(bf16)
    assert len(common) >= 3
    assert all(abs(exact[k] - bf16[k]) < 2e-2 for k in common), (exact, bf16)
    assert exact != bf16  # it did run in bf16


@pytest.mark.parametrize(("task", "raw", "model_id", "cls"), [
    ("vqa", {"image": str(CAT), "question": "what is on the sofa?"}, "dandelin/vilt-b32-finetuned-vqa",
     transformers.ViltForQuestionAnswering),
    ("sentiment", {"text": "the food was great but the service was terrible"},
     "cardiffnlp/twitter-roberta-base-sentiment-latest", transformers.AutoModelForSequenceClassification),
])
def test_fp16_weights_keep_the_fp32_scores(tiny_runtime, task, raw, model_id, cls):
    """fp16 weights multiply in fp32: every score stays within 1e-3 of the fp32 model's, nothing reorders."""
    def scores(quantize: str) -> dict[str, float]:
        runtime = tiny_runtime(quantize=quantize)
        result = runtime.run(task, {**raw, ("model" if task == "vqa" else "text_model"): model_id})
        assert result["provenance"]["dtype"] == ("float32" if quantize == "none" else "fp16-weights")
        if task == "vqa":
            return {item["answer"]: item["score"] for item in result["answers"]}
        return dict(result["modalities"][0]["probabilities"])

    exact, halved = scores("none"), scores("fp16")
    assert set(halved) == set(exact) and len(exact) >= 3
    assert halved == pytest.approx(exact, abs=1e-3)
    assert sorted(halved, key=halved.get) == sorted(exact, key=exact.get)


def test_fp16_weights_caption_like_the_fp32_model(tiny_runtime):
    raw = {"image": str(CAT), "num_beams": 3, "max_new_tokens": 12}
    captions = {quantize: tiny_runtime(quantize=quantize).run("captioning", raw)["caption"]
                for quantize in ("none", "fp16")}
    assert captions["fp16"] == captions["none"] and captions["none"]


def run_together(runtime: Runtime, task_name: str, requests: list[dict]) -> tuple[list[dict], list[int]]:
    """Each request from its own thread, all released at once: the results, and the threads' idents, in order."""
    results: list = [None] * len(requests)
    idents = [0] * len(requests)
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> None:
        idents[i] = threading.get_ident()
        barrier.wait()
        results[i] = runtime.run(task_name, requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, idents


def test_concurrent_requests_are_batched_and_keep_their_own_results(tiny_model_dir):
    settings = Settings(model_dir=tiny_model_dir, memory_budget=4 * 1024**3, device="cpu", batch_window_ms=300,
                        max_batch=4)
    runtime = local_runtime(settings)
    requests = [{"image": str(image), "labels": labels} for image, labels in
                [(CAT, "cat, dog"), (COFFEE, "cup, plate, mug"), (CAT, "bird, fish"), (COFFEE, "cat, cup")]]
    alone = [runtime.run("zero_shot", raw) for raw in requests]
    assert all(r["provenance"]["batch_size"] == 1 for r in alone)
    # One at a time, nobody else is on the way: no request waits out the window (a 20 s one here, so that the
    # bound below is a liveness check, not a speed target).
    patient = local_runtime(replace(settings, batch_window_ms=20_000))
    patient.run("zero_shot", requests[0])  # loads the model
    started = time.perf_counter()
    assert [patient.run("zero_shot", raw)["labels"] for raw in requests] == [r["labels"] for r in alone]
    assert time.perf_counter() - started < 10
    results, _ = run_together(runtime, "zero_shot", requests)
    assert max(r["provenance"]["batch_size"] for r in results) > 1
    for single, batched in zip(alone, results, strict=True):
        assert [x["label"] for x in batched["labels"]] == [x["label"] for x in single["labels"]]
        assert [x["score"] for x in batched["labels"]] == pytest.approx([x["score"] for x in single["labels"]],
                                                                         abs=1e-5)


def test_zero_shot_images_are_preprocessed_in_each_requests_own_thread(tiny_runtime, monkeypatch):
    """The batch gets each request's pixel values ready (made in the request's thread, equal to the processor's),
    and scores them as it scores images it has to preprocess itself (a Ray replica's inputs)."""
    from mmdemo.tasks.zero_shot import ZeroShotTask

    runtime = tiny_runtime(quantize="none",
                               batch_window_ms=2_000, max_batch=3)
    requests = [{"image": str(image), "labels": labels, "model": "openai/clip-vit-base-patch32"} for image, labels in
                [(CAT, "cat, dog"), (COFFEE, "cup, plate, mug"), (CAT, "bird, fish")]]
    runtime.run("zero_shot", requests[0])  # loads the model
    preprocessed_in: list[int] = []
    batches: list[list] = []
    preprocess, predict_batch = ZeroShotTask.preprocess, ZeroShotTask.predict_batch

    def spy_preprocess(self, bundles, inputs):
        preprocessed_in.append(threading.get_ident())
        return preprocess(self, bundles, inputs)

    def spy_predict_batch(self, bundles, batch):
        batches.append(list(batch))
        return predict_batch(self, bundles, batch)

    monkeypatch.setattr(ZeroShotTask, "preprocess", spy_preprocess)
    monkeypatch.setattr(ZeroShotTask, "predict_batch", spy_predict_batch)
    results, threads_of = run_together(runtime, "zero_shot", requests)
    assert sorted(preprocessed_in) == sorted(threads_of) and len(set(threads_of)) == len(requests)
    assert [len(batch) for batch in batches] == [3]
    task = registry.get("zero_shot")
    with runtime.predictor.bundles(task, {"model": task.default_model}) as bundles:
        processor = bundles["model"].processor
        for inputs in batches[0]:
            expected = processor(images=reduce_for(processor, inputs.image), return_tensors="pt").pixel_values
            assert np.array_equal(inputs.pixel_values, expected)
        unprepared = [replace(inputs, pixel_values=None) for inputs in batches[0]]
        with torch.inference_mode():
            assert predict_batch(task, bundles, unprepared) == predict_batch(task, bundles, batches[0])
    for raw, result in zip(requests, results, strict=True):
        assert {x["label"] for x in result["labels"]} == {label.strip() for label in raw["labels"].split(",")}
        assert result["provenance"]["batch_size"] == 3


def test_captions_of_preprocessed_and_raw_images_are_the_same(runtime):
    """Captioning's batch takes the pixel values `preprocess` made, or makes them itself (a Ray replica's inputs):
    the same captions either way, with and without a prefix."""
    task = registry.get("captioning")
    for prefix in ("", "a picture of"):
        batch = [task.validate({"image": str(image), "prefix": prefix, "num_captions": 2}, runtime.settings)
                 for image in (CAT, COFFEE)]
        with runtime.predictor.bundles(task, task.models_needed(batch[0])) as bundles:
            prepared = [task.preprocess(bundles, inputs) for inputs in batch]
            assert all(inputs.pixel_values.shape[0] == 1 for inputs in prepared)
            with torch.inference_mode():
                captions = task.predict_batch(bundles, prepared)
                assert captions == task.predict_batch(bundles, batch)
        assert all(caption.startswith(prefix) for pair in captions for caption in pair) and captions[0] != captions[1]
