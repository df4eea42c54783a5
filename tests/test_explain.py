"""Explain maps on the tiny checkpoints: parity with an independent computation through the model's own eager
attention (hooks, a full backward), the prediction unchanged, no gradient or tensor left behind, bad inputs."""

from __future__ import annotations

import gc
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.errors import InputError
from mmdemo.media.pixels import reduce_for
from mmdemo.runtime import Runtime
from mmdemo.tasks.base import ModelSpec

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = ASSETS / "skimage_chelsea.png"
COFFEE = ASSETS / "skimage_coffee.png"
LABELS = "cat, dog, rabbit, tiger"
ZERO_SHOT = ("openai/clip-vit-base-patch32", "google/siglip-base-patch16-224")


@pytest.fixture(scope="module")
def runtime(tiny_runtime) -> Runtime:
    return tiny_runtime(quantize="none")  # fp32: the reference below runs the checkpoint in fp32 too


def _grid(item: dict) -> np.ndarray:
    return np.asarray(item["grid"], dtype=np.float64)


# ----------------------------------------------------------------------------------------------- reference


class _ProbeAttention(torch.nn.Module):
    """SigLIP's pooling attention written out (torch's MultiheadAttention hides its per-head probabilities from
    autograd): same weights, probabilities kept with retain_grad."""

    def __init__(self, mha: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        self.mha = mha
        self.probs: torch.Tensor | None = None

    def forward(self, query, key, value):
        mha = self.mha
        heads = mha.num_heads
        q, k, v = (torch.nn.functional.linear(x, w, b) for x, w, b in
                   zip((query, key, value), mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)))
        split = lambda x: x.view(x.shape[0], x.shape[1], heads, -1).permute(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        probs = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        probs.retain_grad()
        self.probs = probs
        out = (probs @ v).permute(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], -1)
        return mha.out_proj(out), None


def reference_maps(tiny_model_dir: Path, model_id: str, labels: list[str]) -> dict[str, np.ndarray]:
    """Chefer's relevance for each label on CAT, from the checkpoint's own eager forward: every layer's attention
    probabilities recorded by hooks with retain_grad, a full backward of the labels' logits, then the rule
    R <- R + mean_h((dS/dA * A)+) R written out layer by layer and label by label."""
    path = tiny_model_dir.joinpath(*model_id.split("/"))
    siglip = "siglip" in model_id
    model = (transformers.SiglipModel if siglip else transformers.CLIPModel).from_pretrained(path).eval()
    model.set_attn_implementation("eager")
    processor = transformers.AutoProcessor.from_pretrained(path)
    recorded: list[torch.Tensor] = []

    def keep(module, args, output):
        output[1].retain_grad()
        recorded.append(output[1])

    hooks = [layer.self_attn.register_forward_hook(keep) for layer in model.vision_model.encoder.layers]
    probe = None
    if siglip:
        probe = _ProbeAttention(model.vision_model.head.attention)
        model.vision_model.head.attention = probe
    image = reduce_for(processor, Image.open(CAT).convert("RGB"))  # as the app reduces a large image first
    pixels = processor(images=[image] * len(labels), return_tensors="pt").pixel_values
    text = processor(text=[f"a photo of a {label}." for label in labels],
                     padding="max_length" if siglip else True, return_tensors="pt")
    out = model(pixel_values=pixels, **text)
    out.logits_per_image.diagonal().sum().backward()  # image row i (a copy of CAT) against label i
    for hook in hooks:
        hook.remove()
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    maps = {}
    for row, label in enumerate(labels):
        tokens = recorded[0].shape[-1]
        relevance = torch.eye(tokens)
        for probs in recorded:
            weighted = (probs.grad[row] * probs[row].detach()).clamp(min=0).mean(dim=0)
            relevance = relevance + weighted @ relevance
        if siglip:
            head = (probe.probs.grad[row] * probe.probs[row].detach()).clamp(min=0).mean(dim=0)  # (1, tokens)
            vector = (head @ relevance)[0]
        else:
            vector = relevance[0, 1:]
        grid = vector.reshape(side, side).double().numpy()
        maps[label] = grid / grid.max()
    return maps


# ----------------------------------------------------------------------------------------------- zero-shot


@pytest.mark.parametrize("model_id", ZERO_SHOT)
def test_zero_shot_maps_match_an_independent_computation(runtime: Runtime, tiny_model_dir: Path,
                                                         model_id: str) -> None:
    result = runtime.run("zero_shot", {"image": str(CAT), "labels": LABELS, "model": model_id, "explain": True})
    maps = result["explanation"]["maps"]
    assert [m["label"] for m in maps] == [item["label"] for item in result["labels"][:3]]
    expected = reference_maps(tiny_model_dir, model_id, [m["label"] for m in maps])
    for item in maps:
        grid = _grid(item)
        assert grid.shape == (4, 4)  # 32 px / 8 px patches
        assert grid.max() == pytest.approx(1.0) and grid.min() >= 0
        np.testing.assert_allclose(grid, expected[item["label"]], atol=2e-3)
    # The labels' maps differ: each comes from its own label's gradient.
    assert not np.allclose(_grid(maps[0]), _grid(maps[1]), atol=1e-3)


@pytest.mark.parametrize("model_id", ZERO_SHOT)
def test_explain_leaves_the_prediction_as_the_plain_call_makes_it(runtime: Runtime, model_id: str) -> None:
    raw = {"image": str(COFFEE), "labels": LABELS, "model": model_id}
    plain = runtime.run("zero_shot", raw)
    explained = runtime.run("zero_shot", {**raw, "explain": True})
    assert explained["labels"] == plain["labels"]  # the very same floats, same order
    assert "explanation" not in plain
    assert runtime.run("zero_shot", {**raw, "explain": "false"})["labels"] == plain["labels"]


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on every object touches torch's deprecated lazy attributes
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.parametrize(("task", "raw"), [
    ("zero_shot", {"labels": LABELS, "model": ZERO_SHOT[0]}),
    ("vqa", {"question": "What is this?", "model": "dandelin/vilt-b32-finetuned-vqa"}),
    ("vqa", {"question": "What is this?", "model": "Salesforce/blip-vqa-base"}),
    ("captioning", {"model": "Salesforce/blip-image-captioning-base"}),
    ("captioning", {"model": "microsoft/git-base-coco"}),
])
def test_explain_keeps_no_gradient_and_no_tensor(runtime: Runtime, task: str, raw: dict) -> None:
    raw = {"image": str(CAT), **raw}
    runtime.run(task, raw)  # warm, without explain: the model loaded, its prompt embeddings memoised
    key = runtime.predictor.key_for(ModelSpec(raw["model"]))
    bundle = runtime.predictor._live[key]
    config = bundle.model.config
    attention = {name: getattr(config, name)._attn_implementation for name in config.sub_configs}
    runtime.run(task, {**raw, "explain": True})
    before = _live_tensors()
    for _ in range(3):
        runtime.run(task, {**raw, "explain": True})
    assert _live_tensors() <= before  # no attention map, gradient or activation outlives the call
    assert all(p.grad is None for p in bundle.model.parameters())
    # the app's attention (SDPA where the architecture has it) is the plain call's still
    assert {name: getattr(config, name)._attn_implementation for name in config.sub_configs} == attention


def test_only_the_top_three_of_fifty_labels_are_explained(runtime: Runtime) -> None:
    labels = ", ".join(f"thing {i}" for i in range(50))
    result = runtime.run("zero_shot", {"image": str(CAT), "labels": labels, "explain": True})
    assert len(result["explanation"]["maps"]) == 3
    assert "only the top 3 of 50 labels are explained" in result["explanation"]["note"]


@pytest.mark.parametrize("size", [(1, 1), (8000, 5000)])
def test_explain_on_tiny_and_huge_images(runtime: Runtime, tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "image.png"
    Image.new("RGB", size, (120, 60, 30)).save(path)
    result = runtime.run("zero_shot", {"image": str(path), "labels": "red, blue", "explain": True})
    maps = result["explanation"]["maps"]
    assert len(maps) == 2 and all(_grid(m).shape == (4, 4) for m in maps)
    assert all(0 <= v <= 1 for m in maps for row in m["grid"] for v in row)


def test_ten_explain_requests_at_once_stay_in_the_budget(runtime: Runtime) -> None:
    raw = {"image": str(CAT), "labels": LABELS, "model": ZERO_SHOT[1], "explain": True}
    expected = runtime.run("zero_shot", raw)["explanation"]["maps"]
    results, errors = [], []

    def call() -> None:
        try:
            results.append(runtime.run("zero_shot", raw))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 10
    for result in results:  # each ran alone (no batch with others) and got the same maps
        assert result["provenance"]["batch_size"] == 1
        assert result["explanation"]["maps"] == expected
    report = runtime.cache_report()
    assert report["used_bytes"] <= report["budget_bytes"]


def test_a_bad_explain_value_is_refused(runtime: Runtime) -> None:
    with pytest.raises(InputError, match="explain must be true or false"):
        runtime.run("zero_shot", {"image": str(CAT), "labels": LABELS, "explain": "maybe"})


# ----------------------------------------------------------------------------------------------- VQA


def _eager_model(tiny_model_dir: Path, model_id: str, cls: type) -> tuple[torch.nn.Module, object]:
    path = tiny_model_dir.joinpath(*model_id.split("/"))
    model = cls.from_pretrained(path).eval()
    model.set_attn_implementation("eager")
    return model, transformers.AutoProcessor.from_pretrained(path)


def _keep_probs(module: torch.nn.Module, kept: list[torch.Tensor]):
    def keep(_, args, output):
        output[1].retain_grad()
        kept.append(output[1])

    return module.register_forward_hook(keep)


def test_vilt_map_matches_an_independent_computation(runtime: Runtime, tiny_model_dir: Path) -> None:
    model_id = "dandelin/vilt-b32-finetuned-vqa"
    question = "What animal is this?"
    result = runtime.run("vqa", {"image": str(CAT), "question": question, "model": model_id, "explain": True})
    model, processor = _eager_model(tiny_model_dir, model_id, transformers.ViltForQuestionAnswering)
    image = reduce_for(processor, Image.open(CAT).convert("RGB"))
    batch = processor(images=image, text=question, return_tensors="pt")
    kept: list[torch.Tensor] = []
    hooks = [_keep_probs(layer.attention.attention, kept) for layer in model.vilt.encoder.layer]
    torch.manual_seed(7)  # ViLT's embeddings shuffle the patches with torch's generator: replayed below
    logits = model(**batch, output_attentions=True).logits[0]
    for hook in hooks:
        hook.remove()
    rows, cols = (side // 32 for side in batch["pixel_values"].shape[2:])
    torch.manual_seed(7)
    order = torch.multinomial(torch.ones(rows * cols), rows * cols)  # the patch each image token holds
    top = int(logits.argmax())
    assert model.config.id2label[top] == result["answer"]
    logits[top].backward()
    tokens = kept[0].shape[-1]
    relevance = torch.eye(tokens)
    for probs in kept:
        relevance = relevance + (probs.grad[0] * probs[0].detach()).clamp(min=0).mean(dim=0) @ relevance
    first_patch = batch["input_ids"].shape[1] + 1
    grid = torch.zeros(rows * cols)
    grid[order] = relevance[0, first_patch:]
    expected = (grid / grid.max()).reshape(rows, cols).double().numpy()
    (item,) = result["explanation"]["maps"]
    assert item["label"] == result["answer"]
    np.testing.assert_allclose(_grid(item), expected, atol=2e-3)


def test_blip_vqa_gradcam_matches_an_independent_computation(runtime: Runtime, tiny_model_dir: Path) -> None:
    model_id = "Salesforce/blip-vqa-base"
    question = "What is on the table?"
    result = runtime.run("vqa", {"image": str(COFFEE), "question": question, "model": model_id, "explain": True})
    model, processor = _eager_model(tiny_model_dir, model_id, transformers.BlipForQuestionAnswering)
    image = reduce_for(processor, Image.open(COFFEE).convert("RGB"))
    batch = processor(images=image, text=question, return_tensors="pt")
    layers = model.text_encoder.encoder.layer
    layer = layers[min(len(layers) - 1, 2 * len(layers) // 3)]  # LAVIS's 8 of 12
    kept: list[torch.Tensor] = []
    hook = _keep_probs(layer.crossattention.self, kept)
    image_embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
    question_embeds = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         encoder_hidden_states=image_embeds).last_hidden_state
    hook.remove()
    tokenizer = processor.tokenizer
    answer = torch.tensor([[model.decoder_start_token_id,
                            *tokenizer(result["answer"], add_special_tokens=False).input_ids, tokenizer.sep_token_id]])
    logits = model.text_decoder(input_ids=answer, encoder_hidden_states=question_embeds).logits[0]
    log_likelihood = sum(logits[t - 1].log_softmax(-1)[answer[0, t]] for t in range(1, answer.shape[1]))
    log_likelihood.backward()
    (probs,) = kept
    cam = (probs[0].detach() * probs.grad[0].clamp(min=0)).mean(dim=0)  # (question tokens, image tokens)
    length = int(batch["attention_mask"].sum())
    vector = cam[1:length].mean(dim=0)[1:]
    expected = (vector / vector.max()).reshape(4, 4).double().numpy()
    np.testing.assert_allclose(_grid(result["explanation"]["maps"][0]), expected, atol=2e-3)


@pytest.mark.parametrize("model_id", ["dandelin/vilt-b32-finetuned-vqa", "Salesforce/blip-vqa-base"])
def test_vqa_explain_keeps_the_answer(runtime: Runtime, model_id: str) -> None:
    raw = {"image": str(CAT), "question": "What animal is this?", "model": model_id}
    plain = runtime.run("vqa", raw)
    explained = runtime.run("vqa", {**raw, "explain": True})
    assert [a["answer"] for a in explained["answers"]] == [a["answer"] for a in plain["answers"]]
    for a, b in zip(explained["answers"], plain["answers"], strict=True):
        # ViLT's own forward shuffles its patches (float sums in another order): equal to float rounding
        assert a["score"] == b["score"] or a["score"] == pytest.approx(b["score"], abs=1e-5)
    grid = _grid(explained["explanation"]["maps"][0])
    assert grid.max() == pytest.approx(1.0) and grid.min() >= 0


# ----------------------------------------------------------------------------------------------- captioning


def _word_reference(model, processor, image_embeds_or_pixels, caption: str, git: bool) -> list[np.ndarray]:
    """Each word's GradCAM, one backward pass per word (no batch of copies), on the eager model."""
    tokenizer = processor.tokenizer
    pieces = tokenizer(caption, add_special_tokens=False).input_ids
    tokens = tokenizer.convert_ids_to_tokens(pieces)
    start = tokenizer.cls_token_id if git else model.config.text_config.bos_token_id
    ids = torch.tensor([[start, *pieces, tokenizer.sep_token_id]])
    layers = model.git.encoder.layer if git else model.text_decoder.bert.encoder.layer
    chosen = layers[min(len(layers) - 1, 2 * len(layers) // 3)]
    module = chosen.attention.self if git else chosen.crossattention.self
    words: list[list[int]] = []
    for position, token in enumerate(tokens, start=1):
        if token.startswith("##"):
            words[-1].append(position)
        else:
            words.append([position])
    maps = []
    for positions in words:
        kept: list[torch.Tensor] = []
        hook = _keep_probs(module, kept)
        if git:
            logits = model(input_ids=ids, pixel_values=image_embeds_or_pixels).logits[0]
            offset = logits.shape[0] - ids.shape[1]
            logits = logits[offset:]
        else:
            logits = model.text_decoder(input_ids=ids, encoder_hidden_states=image_embeds_or_pixels).logits[0]
        hook.remove()
        sum(logits[p - 1].log_softmax(-1)[ids[0, p]] for p in positions).backward()
        (probs,) = kept
        cam = (probs[0].detach() * probs.grad[0].clamp(min=0)).mean(dim=0)
        if git:
            vector = cam[[offset + p - 1 for p in positions], 1:offset].mean(dim=0)
        else:
            vector = cam[[p - 1 for p in positions], 1:].mean(dim=0)
        maps.append((vector / vector.max()).reshape(4, 4).double().numpy())
        model.zero_grad()
    return maps


@pytest.mark.parametrize("model_id", ["Salesforce/blip-image-captioning-base", "microsoft/git-base-coco"])
def test_caption_word_maps_match_an_independent_computation(runtime: Runtime, tiny_model_dir: Path,
                                                            model_id: str) -> None:
    raw = {"image": str(CAT), "model": model_id}
    plain = runtime.run("captioning", raw)
    result = runtime.run("captioning", {**raw, "explain": True})
    assert result["captions"] == plain["captions"]
    git = "git" in model_id
    cls = transformers.GitForCausalLM if git else transformers.BlipForConditionalGeneration
    model, processor = _eager_model(tiny_model_dir, model_id, cls)
    image = reduce_for(processor, Image.open(CAT).convert("RGB"))
    pixels = processor(images=image, return_tensors="pt").pixel_values
    source = pixels if git else model.vision_model(pixel_values=pixels).last_hidden_state.detach()
    expected = _word_reference(model, processor, source, result["caption"], git)
    maps = result["explanation"]["maps"]
    assert [m["word"] for m in maps] == result["caption"].split()
    assert len(maps) == len(expected) >= 1
    for item, reference in zip(maps, expected, strict=True):
        np.testing.assert_allclose(_grid(item), reference, atol=2e-3)


def test_a_captioner_without_maps_says_so(runtime: Runtime) -> None:
    raw = {"image": str(CAT), "model": "nlpconnect/vit-gpt2-image-captioning"}
    plain = runtime.run("captioning", raw)
    result = runtime.run("captioning", {**raw, "explain": True})
    assert result["captions"] == plain["captions"]
    assert result["explanation"]["maps"] == []
    assert result["explanation"]["note"].startswith("Maps are not available for VisionEncoderDecoderModel")
