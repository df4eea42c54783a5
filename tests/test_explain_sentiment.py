"""Sentiment word attributions on the tiny checkpoints: gradient × input against an independent computation (the
checkpoint loaded again, eager attention, a hook keeping the embeddings' gradient, a full backward, words matched
by character), occlusion against each text scored alone, the prediction unchanged, no gradient or tensor left,
words as the text's own, long texts, the packed CPU formats, VADER."""

from __future__ import annotations

import copy
import gc
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.explain import attributions
from mmdemo.explain.grads import differentiable, keep_transposed_weights
from mmdemo.runtime import Runtime
from mmdemo.tasks.base import ModelSpec
from mmdemo.tasks.sentiment.task import LABELS, SST2_NEUTRAL_BELOW, sst2_to_three

ROBERTA = "cardiffnlp/twitter-roberta-base-sentiment-latest"
DISTILBERT = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
TEXT_MODELS = (ROBERTA, DISTILBERT)
TEXT = "What a wonderful sunny day but the coffee was terrible"
# Punctuation glued to words, a lone symbol, accents, an emoji: each whitespace-separated piece is one word.
PUNCTUATED = "Wow!! the café's crème brûlée... was 10/10 :( (really) 😀 - great, no?"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = ASSETS / "skimage_chelsea.png"


@pytest.fixture(scope="module")
def runtime(tiny_runtime) -> Runtime:
    return tiny_runtime(quantize="none")  # fp32: the reference below runs the checkpoint in fp32 too


@pytest.fixture(scope="module")
def packed_runtime(tiny_runtime) -> Runtime:
    return tiny_runtime(quantize="fp16")  # the CPU format the app gives the text models: packed fp16-weight Linear


def _bundle(runtime: Runtime, model_id: str):
    runtime.run("sentiment", {"text": TEXT, "text_model": model_id})  # loaded
    return runtime.predictor._live[runtime.predictor.key_for(ModelSpec(model_id))]


def _scores(result: dict) -> np.ndarray:
    return np.asarray([w["score"] for w in result["explanation"]["words"]], dtype=np.float64)


# ----------------------------------------------------------------------------------------------- reference


def reference_gradient_x_input(tiny_model_dir: Path, model_id: str, text: str) -> tuple[str, list[str], np.ndarray]:
    """The verdict, the words and their gradient × input (scaled to ±1), computed independently: the checkpoint in
    fp32 with eager attention, the word embeddings' output kept by a hook with retain_grad, the three-class mapping
    written out, a full `.backward()`, and each token given to the word that owns its first non-space character."""
    path = tiny_model_dir.joinpath(*model_id.split("/"))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    model.set_attn_implementation("eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(text, return_tensors="pt", return_offsets_mapping=True, return_special_tokens_mask=True)
    kept: list[torch.Tensor] = []

    def keep(module, args, output):
        output.retain_grad()
        kept.append(output)

    hook = model.get_input_embeddings().register_forward_hook(keep)
    logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits[0]
    hook.remove()
    p = logits.softmax(dim=-1)
    names = [model.config.id2label[i].lower() for i in range(len(p))]
    if len(p) == 3:
        three = {name: p[i] for i, name in enumerate(names)}
    else:  # SST-2: neutral from the minority class (see sst2_to_three's docstring)
        negative, positive = p[names.index("negative")], p[names.index("positive")]
        t = SST2_NEUTRAL_BELOW
        neutral = torch.minimum(negative, positive) * t / (1 - t * t)
        three = {"negative": (1 - neutral) * negative, "neutral": neutral, "positive": (1 - neutral) * positive}
    verdict = max(three, key=lambda name: three[name].item())
    three[verdict].log().backward()
    per_token = (kept[0].grad * kept[0]).sum(dim=-1)[0].detach().numpy()
    owner = [-1] * len(text)
    matches = list(re.finditer(r"\S+", text))
    for index, match in enumerate(matches):
        owner[match.start():match.end()] = [index] * (match.end() - match.start())
    sums = np.zeros(len(matches))
    for score, (start, end), added in zip(per_token, encoded["offset_mapping"][0].tolist(),
                                          encoded["special_tokens_mask"][0].tolist(), strict=True):
        owners = [owner[c] for c in range(start, max(end, start + 1)) if c < len(text) and owner[c] >= 0]
        if not added and owners:
            sums[owners[0]] += score
    return verdict, [m.group() for m in matches], sums / np.abs(sums).max()


# ----------------------------------------------------------------------------------------------- gradient × input


@pytest.mark.parametrize("model_id", TEXT_MODELS)
@pytest.mark.parametrize("text", [TEXT, PUNCTUATED])
def test_gradient_x_input_matches_an_independent_computation(runtime: Runtime, tiny_model_dir: Path,
                                                            model_id: str, text: str) -> None:
    result = runtime.run("sentiment", {"text": text, "text_model": model_id, "explain": True})
    explanation = result["explanation"]
    verdict, words, expected = reference_gradient_x_input(tiny_model_dir, model_id, text)
    assert explanation["method"] == "gradient-x-input"
    assert explanation["note"].startswith("Gradient × input") and "only the first" not in explanation["note"]
    assert explanation["label"] == verdict == result["modalities"][0]["label"]
    assert [w["word"] for w in explanation["words"]] == words == text.split()
    scores = _scores(result)
    assert np.abs(scores).max() == pytest.approx(1.0)
    np.testing.assert_allclose(scores, expected, atol=2e-3)


@pytest.mark.parametrize("model_id", TEXT_MODELS)
def test_explain_leaves_the_sentiment_as_the_plain_call_makes_it(runtime: Runtime, model_id: str) -> None:
    raw = {"text": TEXT, "text_model": model_id}
    plain = runtime.run("sentiment", raw)
    explained = runtime.run("sentiment", {**raw, "explain": True})
    assert "explanation" not in plain
    assert explained["probabilities"] == plain["probabilities"]  # the very same floats
    assert explained["modalities"] == plain["modalities"] and explained["label"] == plain["label"]


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on every object touches torch's deprecated lazy attributes
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.parametrize("model_id", TEXT_MODELS)
def test_sentiment_explain_keeps_no_gradient_and_no_tensor(runtime: Runtime, model_id: str) -> None:
    bundle = _bundle(runtime, model_id)
    raw = {"text": TEXT, "text_model": model_id, "explain": True}
    runtime.run("sentiment", raw)  # warm: the model made differentiable once
    before = _live_tensors()
    for _ in range(3):
        runtime.run("sentiment", raw)
    assert _live_tensors() <= before  # no embedding, gradient or activation outlives the call
    assert all(p.grad is None for p in bundle.model.parameters())
    assert not bundle.model.get_input_embeddings()._forward_hooks  # the embedding hook is gone


def test_a_text_longer_than_the_occlusion_cap_has_every_word_scored(runtime: Runtime) -> None:
    words = ("good bad movie plot acting very dull fine " * 13).split()  # 104 words
    assert len(words) > attributions.MAX_WORDS
    result = runtime.run("sentiment", {"text": " ".join(words), "text_model": ROBERTA, "explain": True})
    assert [w["word"] for w in result["explanation"]["words"]] == words
    assert "only the first" not in result["explanation"]["note"]
    assert np.count_nonzero(_scores(result)[attributions.MAX_WORDS:]) > 30  # the words past the cap are scored


def test_a_text_past_the_models_token_limit_says_which_words_are_scored(runtime: Runtime) -> None:
    words = [f"w{i}x" for i in range(200)]  # about 5 tiny-BPE tokens each: past the 512 the model reads
    result = runtime.run("sentiment", {"text": " ".join(words), "text_model": ROBERTA, "explain": True})
    explanation = result["explanation"]
    scored = int(re.search(r"reads the first 512 tokens: only the first (\d+) of 200 words are scored",
                           explanation["note"]).group(1))
    assert 50 < scored < 200
    assert [w["word"] for w in explanation["words"]] == words
    assert np.count_nonzero(_scores(result)[scored:]) == 0 and np.count_nonzero(_scores(result)[:scored]) > 0


def test_explain_and_plain_requests_at_once_keep_their_results(runtime: Runtime) -> None:
    """The embedding hook acts on its own thread's pass only: plain requests running meanwhile on the same model
    get their usual probabilities, and each explanation is the one a lone request gets."""
    plain_raw = {"text": PUNCTUATED, "text_model": ROBERTA}
    explain_raw = {"text": TEXT, "text_model": ROBERTA, "explain": True}
    expected_plain = runtime.run("sentiment", plain_raw)["probabilities"]
    expected_words = runtime.run("sentiment", explain_raw)["explanation"]["words"]
    results, errors = [], []

    def call(raw: dict) -> None:
        try:
            results.append(runtime.run("sentiment", raw))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(raw,)) for raw in [plain_raw, explain_raw] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 8
    for result in results:
        if "explanation" in result:
            assert result["explanation"]["words"] == expected_words
        else:
            assert result["probabilities"] == expected_plain


# ----------------------------------------------------------------------------------------------- packed formats


@pytest.mark.parametrize("model_id", TEXT_MODELS)
def test_the_packed_fp16_model_explains_as_the_fp32_one(runtime: Runtime, packed_runtime: Runtime,
                                                        model_id: str) -> None:
    raw = {"text": TEXT, "text_model": model_id}
    plain = packed_runtime.run("sentiment", raw)
    packed = packed_runtime.run("sentiment", {**raw, "explain": True})
    assert packed["provenance"]["dtype"] == "fp16-weights"
    assert packed["probabilities"] == plain["probabilities"]
    reference = runtime.run("sentiment", {**raw, "explain": True})
    assert packed["explanation"]["label"] == reference["explanation"]["label"]
    np.testing.assert_allclose(_scores(packed), _scores(reference), atol=2e-2)  # fp16 weights: ~1e-3 apart
    bundle = _bundle(packed_runtime, model_id)
    assert all(p.grad is None for p in bundle.model.parameters())


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_a_packed_layers_gradient_is_a_float_layers_with_its_weights(kind: str) -> None:
    """Through `differentiable`, with and without the transposed copy, a packed Linear stack's input gradient is the
    one an ordinary fp32 stack with the packed (rounded) weights gives."""
    from mmdemo.models.loading import quantize_linear

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.GELU(), torch.nn.Linear(24, 8))
    packed = differentiable(quantize_linear(copy.deepcopy(model), kind))
    for layer, packed_layer in zip((model[0], model[2]), (packed[0], packed[2]), strict=True):
        weight, _ = packed_layer._packed_params._weight_bias()
        layer.weight.data = weight.dequantize() if weight.is_quantized else weight.float()
    x = torch.randn(3, 5, 16)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(leaf).square().sum(), leaf)
    leaf = x.clone().requires_grad_(True)
    (unpacked,) = torch.autograd.grad(packed(leaf).square().sum(), leaf)
    assert keep_transposed_weights(packed) == 2 * (16 * 24 + 24 * 8)
    assert keep_transposed_weights(packed) == 0  # built once
    leaf = x.clone().requires_grad_(True)
    (transposed,) = torch.autograd.grad(packed(leaf).square().sum(), leaf)
    # int8 rounds the forward's activations (both gradients see that forward), and its transposed copy is fp16
    tolerance = 1e-5 if kind == "fp16" else 2e-2
    np.testing.assert_allclose(unpacked, transposed, rtol=tolerance, atol=tolerance)
    if kind == "fp16":
        np.testing.assert_allclose(transposed, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------- occlusion


@pytest.mark.parametrize("model_id", TEXT_MODELS)
def test_occlusion_matches_scoring_each_text_alone(runtime: Runtime, model_id: str) -> None:
    """The reference method, still a function: its batch of variants gives the drops each text gets alone."""
    bundle = _bundle(runtime, model_id)
    plain = runtime.run("sentiment", {"text": TEXT, "text_model": model_id})
    label_name = plain["modalities"][0]["label"]

    def to_three(p: list[float]) -> tuple[float, ...]:
        return sst2_to_three(*p) if len(p) == 2 else tuple(p)  # the tiny checkpoints list classes in LABELS order

    classify = attributions.batch_classifier(bundle.model, bundle.processor, bundle.prepare, 512, to_three)
    with torch.inference_mode():
        words, note = attributions.occlusion(TEXT, classify, LABELS.index(label_name))
    full = plain["probabilities"][label_name]
    split = TEXT.split()
    drops = [full - runtime.run("sentiment", {"text": " ".join(split[:i] + split[i + 1:]),
                                              "text_model": model_id})["probabilities"][label_name]
             for i in range(len(split))]  # each variant through the whole runtime, one request at a time
    assert [w["word"] for w in words] == split and note.startswith("Occlusion")
    np.testing.assert_allclose([w["score"] for w in words], np.asarray(drops) / max(abs(d) for d in drops),
                               atol=2e-3)


# ----------------------------------------------------------------------------------------------- VADER, no text


def test_vader_words_are_its_lexicon_scores(runtime: Runtime) -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lexicon = SentimentIntensityAnalyzer().lexicon
    result = runtime.run("sentiment", {"text": TEXT, "text_model": "vader", "explain": True})
    assert result["explanation"]["method"] == "vader-lexicon"
    scores = {w["word"]: w["score"] for w in result["explanation"]["words"]}
    assert scores["wonderful"] == pytest.approx(lexicon["wonderful"] / 4)
    assert scores["terrible"] == pytest.approx(lexicon["terrible"] / 4) and scores["terrible"] < 0
    assert scores["coffee"] == 0


def test_sentiment_without_text_has_nothing_to_explain(runtime: Runtime) -> None:
    result = runtime.run("sentiment", {"image": str(CAT), "explain": True})
    assert "explanation" not in result
