"""The tiny offline checkpoints reload by their real ids and give non-degenerate, deterministic outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmdemo.testing import tiny_models
from mmdemo.testing.tiny_models import (
    MARKER_FILE,
    TINY_MODEL_IDS,
    build_tiny_model,
    builder_version,
    ensure_tiny_models,
)

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "images"
if not MEDIA.is_dir():  # the repo's own location may differ from /work/main
    MEDIA = Path("/work/shared/media/images")

CHAIN_WORDS = set(tiny_models.CHAIN_WORDS)  # the words the tiny generative decoders say
BLIP_VQA = ("Salesforce/blip-vqa-base", "Salesforce/blip-vqa-capfilt-large")
BLIP_CAPTION = ("Salesforce/blip-image-captioning-base", "Salesforce/blip-image-captioning-large")
CLIP = ("openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")
WHISPER_MULTI = ("openai/whisper-base", "openai/whisper-tiny", "openai/whisper-small")
WHISPER_EN = "distil-whisper/distil-small.en"


def _image(name: str) -> Image.Image:
    return Image.open(MEDIA / name).convert("RGB")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [_image(n) for n in ("skimage_chelsea.png", "skimage_coffee.png", "skimage_astronaut.jpg")]


def _load(root: Path, model_id: str):
    """Load the way the app does: the class named in config.json ``architectures``, from the local directory."""
    import transformers

    path = root / model_id
    assert (path / "config.json").is_file()
    arch = json.loads((path / "config.json").read_text())["architectures"]
    assert len(arch) == 1
    cls = getattr(transformers, arch[0])
    model = cls.from_pretrained(path).eval()
    return path, model


def _processor(path: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


def test_ids_and_layout(tiny_model_dir: Path) -> None:
    assert len(TINY_MODEL_IDS) == len(set(TINY_MODEL_IDS)) == 16
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    for model_id in TINY_MODEL_IDS:
        org, name = model_id.split("/")
        path = tiny_model_dir / org / name
        assert (path / "config.json").is_file(), model_id
        assert (path / "model.safetensors").is_file(), model_id
        tokenizer_file = "spiece.model" if "siglip" in model_id else "tokenizer.json"
        assert (path / tokenizer_file).is_file(), model_id
        assert (path / MARKER_FILE).read_text().strip() == builder_version()
    assert not [p for p in tiny_model_dir.glob("*/.*building*")], "left-over temporary build directories"


def test_ensure_skips_current_and_rebuilds_stale(tmp_path: Path) -> None:
    model_id = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    ensure_tiny_models(tmp_path, [model_id])
    path = tmp_path / model_id
    weights = (path / "model.safetensors").read_bytes()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    ensure_tiny_models(tmp_path, [model_id])
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # current: skipped
    (path / MARKER_FILE).write_text("stale\n")
    ensure_tiny_models(tmp_path, [model_id])
    assert (path / MARKER_FILE).read_text().strip() == builder_version()
    assert (path / "model.safetensors").read_bytes() == weights  # deterministic rebuild
    assert sorted(p.name for p in (tmp_path / "distilbert").iterdir()) == [path.name]
    with pytest.raises(KeyError):
        build_tiny_model("nobody/unknown", tmp_path)


@pytest.mark.parametrize("model_id", BLIP_VQA)
def test_blip_vqa(tiny_model_dir: Path, model_id: str, images) -> None:
    from transformers import BlipForQuestionAnswering, BlipProcessor

    path, model = _load(tiny_model_dir, model_id)
    processor = _processor(path)
    assert isinstance(model, BlipForQuestionAnswering) and isinstance(processor, BlipProcessor)
    answers = []
    for image in images:
        inputs = processor(images=image, text="what is in the picture?", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=8)
        answers.append(processor.decode(out[0], skip_special_tokens=True).strip())
    assert all(answers), answers
    assert len(set(answers)) > 1, answers
    assert all(set(a.split()) <= CHAIN_WORDS for a in answers), answers
    inputs = processor(images=images[0], text="what is in the picture?", return_tensors="pt")
    with torch.no_grad():
        again = processor.decode(model.generate(**inputs, max_new_tokens=8)[0], skip_special_tokens=True).strip()
    assert again == answers[0]


def test_vilt_vqa(tiny_model_dir: Path, images) -> None:
    from transformers import ViltForQuestionAnswering, ViltProcessor

    path, model = _load(tiny_model_dir, "dandelin/vilt-b32-finetuned-vqa")
    processor = _processor(path)
    assert isinstance(model, ViltForQuestionAnswering) and isinstance(processor, ViltProcessor)
    labels = set(model.config.id2label.values())
    assert {"yes", "no", "2", "cat", "dog", "red"} <= labels and 10 <= len(labels) <= 16
    tops = []
    for image in images[:2]:
        inputs = processor(image, "what color is the cat?", return_tensors="pt")
        with torch.no_grad():
            probs = model(**inputs).logits.sigmoid()[0]
        scores, idx = probs.topk(5)
        top = [model.config.id2label[int(i)] for i in idx]
        assert set(top) <= labels
        assert len({round(float(s), 6) for s in scores}) == 5, scores
        tops.append((top, scores))
    assert tops[0][0] != tops[1][0] or not torch.allclose(tops[0][1], tops[1][1])


@pytest.mark.parametrize("model_id", BLIP_CAPTION + ("microsoft/git-base-coco",))
def test_captioners(tiny_model_dir: Path, model_id: str, images) -> None:
    path, model = _load(tiny_model_dir, model_id)
    processor = _processor(path)
    captions = []
    for image in images:
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=12)
        assert out[0, -1] == processor.tokenizer.sep_token_id  # [SEP] ends BLIP and GIT captions, before the limit
        captions.append(processor.batch_decode(out, skip_special_tokens=True)[0].strip())
    assert all(captions), captions
    assert len(set(captions)) > 1, captions
    assert all(set(c.split()) <= CHAIN_WORDS for c in captions), captions


def test_git_rejects_token_type_ids(tiny_model_dir: Path, images) -> None:
    from transformers import GitForCausalLM, GitProcessor

    path, model = _load(tiny_model_dir, "microsoft/git-base-coco")
    processor = _processor(path)
    assert isinstance(model, GitForCausalLM) and isinstance(processor, GitProcessor)
    inputs = processor(images=images[0], text="a cat", return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == model.config.vocab_size


def test_vit_gpt2(tiny_model_dir: Path, images) -> None:
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    path, model = _load(tiny_model_dir, "nlpconnect/vit-gpt2-image-captioning")
    assert isinstance(model, VisionEncoderDecoderModel)
    assert model.config.decoder_start_token_id is not None and model.config.pad_token_id is not None
    image_processor = AutoImageProcessor.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(image_processor).__name__.startswith("ViTImageProcessor")
    assert type(tokenizer).__name__ == "GPT2Tokenizer"
    captions = []
    for image in images:
        pixel_values = image_processor(images=image, return_tensors="pt").pixel_values
        with torch.no_grad():
            out = model.generate(pixel_values, max_new_tokens=12)
        assert out[0, -1] == model.generation_config.eos_token_id
        captions.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
    assert all(captions), captions
    assert len(set(captions)) > 1, captions
    assert all(set(c.split()) <= CHAIN_WORDS for c in captions), captions


@pytest.mark.parametrize("model_id", CLIP + ("google/siglip-base-patch16-224",))
def test_zero_shot(tiny_model_dir: Path, model_id: str, images) -> None:
    path, model = _load(tiny_model_dir, model_id)
    processor = _processor(path)
    labels = ["a photo of a cat", "a photo of a cup of coffee", "a photo of an astronaut"]
    padding = "max_length" if "siglip" in model_id else True
    inputs = processor(text=labels, images=images[:2], padding=padding, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    assert logits.shape == (2, 3)
    probs = logits.sigmoid() if "siglip" in model_id else logits.softmax(dim=-1)
    for row in probs:
        values = sorted(float(v) for v in row)
        assert min(b - a for a, b in zip(values, values[1:])) > 1e-3, row
    assert not torch.allclose(probs[0], probs[1], atol=1e-3)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits_per_image, logits)


def test_siglip_tokenizer_pads_to_max_length(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer, SiglipTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "google/siglip-base-patch16-224")
    assert isinstance(tokenizer, SiglipTokenizer)
    ids = tokenizer(["a photo of a cat"], padding="max_length", return_tensors="pt").input_ids
    assert ids.shape == (1, 64)
    assert tokenizer.convert_ids_to_tokens(ids[0, :5].tolist()) == ["▁a", "▁photo", "▁of", "▁a", "▁cat"]


def _noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("model_id", WHISPER_MULTI + (WHISPER_EN,))
def test_whisper(tiny_model_dir: Path, model_id: str) -> None:
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    path, model = _load(tiny_model_dir, model_id)
    processor = _processor(path)
    assert isinstance(model, WhisperForConditionalGeneration) and isinstance(processor, WhisperProcessor)
    assert isinstance(processor.feature_extractor, WhisperFeatureExtractor)
    assert processor.feature_extractor.feature_size == model.config.num_mel_bins == 80
    assert isinstance(processor.tokenizer, WhisperTokenizer)
    assert processor.tokenizer.normalize("The Colour is GREY!") == "the color is gray"
    features = processor(_noise(), sampling_rate=16000, return_tensors="pt").input_features

    with torch.no_grad():
        ids = model.generate(features, return_timestamps=False)
        again = model.generate(features, return_timestamps=False)
    assert torch.equal(ids, again)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
    assert text and set(text.split()) <= CHAIN_WORDS, (text, ids)
    assert len(ids[0]) <= 8  # short: ended by itself, far below max_length (448)

    with torch.no_grad():
        stamped = model.generate(features, return_timestamps=True)
    assert processor.batch_decode(stamped, skip_special_tokens=True)[0].strip() == text
    assert processor.decode(stamped[0], decode_with_timestamps=True).startswith("<|0.00|>")

    gen = model.generation_config
    if model_id == WHISPER_EN:
        assert gen.is_multilingual is False
        with pytest.raises(ValueError, match="English-only"):
            model.generate(features, language="fr", task="translate")
    else:
        assert gen.is_multilingual is True
        tok = processor.tokenizer
        assert gen.lang_to_id["<|fr|>"] == tok.convert_tokens_to_ids("<|fr|>")
        assert gen.task_to_id["translate"] == tok.convert_tokens_to_ids("<|translate|>")
        with torch.no_grad():
            out = model.generate(features, language="fr", task="translate", return_dict_in_generate=True)
        prompt = out.sequences[0, :4].tolist()
        assert prompt == tok.convert_tokens_to_ids(
            ["<|startoftranscript|>", "<|fr|>", "<|translate|>", "<|notimestamps|>"]
        )


def test_whisper_word_timestamps(tiny_model_dir: Path) -> None:
    path, model = _load(tiny_model_dir, "openai/whisper-base")
    processor = _processor(path)
    features = processor(_noise(seed=1), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = model.generate(features, return_token_timestamps=True, return_dict_in_generate=True)
    assert out["token_timestamps"].shape == out["sequences"].shape
    assert bool((out["token_timestamps"][0, 1:] >= out["token_timestamps"][0, :-1]).all())


@pytest.mark.parametrize(
    ("model_id", "labels"),
    [
        ("cardiffnlp/twitter-roberta-base-sentiment-latest", ["negative", "neutral", "positive"]),
        ("distilbert/distilbert-base-uncased-finetuned-sst-2-english", ["NEGATIVE", "POSITIVE"]),
    ],
)
def test_text_classifiers(tiny_model_dir: Path, model_id: str, labels: list[str]) -> None:
    from transformers import AutoTokenizer

    path, model = _load(tiny_model_dir, model_id)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if "distilbert" in model_id:
        assert type(tokenizer).__name__ == "DistilBertTokenizer"
    assert [model.config.id2label[i] for i in range(len(labels))] == labels
    sentences = ["I love this movie, it is great!", "This food was terrible and the service was awful."]
    inputs = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**inputs).logits.softmax(dim=-1)
    assert probs.shape == (2, len(labels))
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert (probs[0] - probs[1]).abs().max() > 1e-2, probs


def test_builds_are_deterministic(tiny_model_dir: Path, tmp_path: Path) -> None:
    for model_id in ("Salesforce/blip-vqa-base", "openai/whisper-tiny", "google/siglip-base-patch16-224"):
        fresh = build_tiny_model(model_id, tmp_path)
        built = tiny_model_dir / model_id
        names = sorted(p.name for p in fresh.iterdir())
        assert names == sorted(p.name for p in built.iterdir())
        for name in names:
            assert (fresh / name).read_bytes() == (built / name).read_bytes(), (model_id, name)
