"""BLIP's fused attention: the vision encoder and generate() give transformers' own outputs, while the decoder's
cross-attention keeps one copy of each image."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import transformers
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import registry
from mmdemo.media import load_image
from mmdemo.models.attention import FusedBlipAttention, SharedImageCrossAttention, fuse_attention, repeated_rows
from mmdemo.models.generation import SharedCrossAttentionCache

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CHELSEA, COFFEE, ASTRONAUT = (load_image(str(ASSETS / name)) for name in
                              ("skimage_chelsea.png", "skimage_coffee.png", "skimage_astronaut.jpg"))


def _rows(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1).expand(-1, 4, 3).contiguous()


def test_repeated_rows_finds_each_inputs_copies():
    assert repeated_rows(_rows(1, 1, 1, 2, 2, 2)) == 3  # two inputs x three beams
    assert repeated_rows(_rows(1, 1, 1, 1, 1, 1, 2, 2, 2)) == 3  # the same image twice, then another
    assert repeated_rows(_rows(5, 5, 5, 5)) == 4  # one image for everyone
    assert repeated_rows(_rows(1, 2, 3)) == 1
    assert repeated_rows(_rows(1, 1, 2, 2, 2)) == 1  # runs of 2 and 3 share no group size
    mask = torch.tensor([[0.0], [0.0], [0.0], [-1.0]])
    assert repeated_rows(_rows(1, 1, 1, 1), mask) == 1  # equal states under different masks are not copies
    assert repeated_rows(_rows(1, 1, 1, 1), torch.zeros(4, 1)) == 4


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    """Transformers' own BLIP captioning model and a fused copy of it."""
    stock = transformers.BlipForConditionalGeneration.from_pretrained(
        tiny_model_dir / "Salesforce/blip-image-captioning-base").eval()
    processor = transformers.AutoProcessor.from_pretrained(tiny_model_dir / "Salesforce/blip-image-captioning-base")
    fused = copy.deepcopy(stock)
    layers = sum(isinstance(m, (BlipAttention, BlipTextSelfAttention)) for m in stock.modules())
    assert fuse_attention(fused) == layers > 0
    return stock, fused, processor


def test_fused_vision_attention_gives_transformers_outputs(captioner):
    stock, fused, processor = captioner
    pixels = processor(images=[CHELSEA, COFFEE], return_tensors="pt").pixel_values
    assert any(type(m) is FusedBlipAttention for m in fused.vision_model.modules())
    assert not any(type(m) is FusedBlipAttention for m in stock.modules())
    with torch.inference_mode():
        expected = stock.vision_model(pixel_values=pixels).last_hidden_state
        got = fused.vision_model(pixel_values=pixels).last_hidden_state
    assert expected.abs().max() > 0.1  # not a degenerate all-zero comparison
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("images, copies, kept", [
    ([CHELSEA, COFFEE, ASTRONAUT], 3, 3),  # three beams per image
    ([CHELSEA, CHELSEA, COFFEE], 3, 3),  # the same image twice, side by side: runs of 6 and 3
    ([COFFEE, COFFEE], 6, 1),  # everyone sent the same image: one copy for all six beams
])
def test_beam_search_keeps_one_copy_per_image_and_gives_transformers_captions(captioner, images, copies, kept):
    stock, fused, processor = captioner
    pixels = processor(images=images, return_tensors="pt").pixel_values
    settings = {"num_beams": 3, "num_return_sequences": 3, "max_new_tokens": 12, "do_sample": False,
                "output_scores": True, "return_dict_in_generate": True}
    cache = SharedCrossAttentionCache()
    with torch.inference_mode():
        expected = stock.generate(pixel_values=pixels, **settings)
        got = fused.generate(pixel_values=pixels, cache=cache, **settings)
    assert cache.copies == copies
    cross = cache.cross_attention_cache.layers[0]
    assert cross.keys.shape[0] == cross.values.shape[0] == kept  # one row per image, not one per beam
    assert expected.sequences.shape[1] > 3
    assert torch.equal(got.sequences, expected.sequences)
    torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, rtol=1e-4, atol=1e-5)


def test_sampling_keeps_one_copy_per_image_and_draws_transformers_samples(captioner):
    stock, fused, processor = captioner
    pixels = processor(images=[CHELSEA, ASTRONAUT], return_tensors="pt").pixel_values
    settings = {"do_sample": True, "top_p": 0.9, "top_k": 0, "num_return_sequences": 4, "max_new_tokens": 10}
    cache = SharedCrossAttentionCache()
    with torch.inference_mode():
        torch.manual_seed(7)
        expected = stock.generate(pixel_values=pixels, **settings)
        torch.manual_seed(7)
        got = fused.generate(pixel_values=pixels, cache=cache, **settings)
    assert cache.copies == 4
    assert torch.equal(got, expected)


def test_other_caches_get_transformers_cross_attention(captioner):
    stock, fused, processor = captioner
    pixels = processor(images=[CHELSEA, COFFEE], return_tensors="pt").pixel_values
    with torch.inference_mode():
        expected = stock.generate(pixel_values=pixels, num_beams=2, max_new_tokens=8)
        got = fused.generate(pixel_values=pixels, num_beams=2, max_new_tokens=8)  # transformers' own cache
    assert torch.equal(got, expected)


def test_blip_vqa_answers_are_unchanged(tiny_model_dir):
    path = tiny_model_dir / "Salesforce/blip-vqa-base"
    stock = transformers.BlipForQuestionAnswering.from_pretrained(path).eval()
    fused = copy.deepcopy(stock)
    assert fuse_attention(fused) > 0
    processor = transformers.AutoProcessor.from_pretrained(path)
    batch = processor(images=[CHELSEA, COFFEE], text=["what animal is this?", "what is in the cup?"],
                      padding=True, return_tensors="pt")
    with torch.inference_mode():
        for beams in (1, 3):
            expected = stock.generate(**batch, max_new_tokens=12, num_beams=beams)
            got = fused.generate(**batch, max_new_tokens=12, num_beams=beams, cache=SharedCrossAttentionCache())
            assert expected.shape[1] > 2
            assert torch.equal(got, expected)


def test_the_runtime_loads_blip_fused_and_leaves_other_models_alone(tiny_runtime):
    runtime = tiny_runtime()
    for task_name, model_id, expected in (
            ("captioning", "Salesforce/blip-image-captioning-base", {FusedBlipAttention, SharedImageCrossAttention}),
            ("vqa", "Salesforce/blip-vqa-base", {FusedBlipAttention, SharedImageCrossAttention}),
            ("vqa", "dandelin/vilt-b32-finetuned-vqa", set()),
            ("zero_shot", "openai/clip-vit-base-patch32", set())):
        task = registry.get(task_name)
        with runtime.predictor.bundles(task, {"model": task.model_spec(model_id)}) as bundles:
            kinds = {type(m) for m in bundles["model"].model.modules()}
        assert kinds & {FusedBlipAttention, SharedImageCrossAttention} == expected, model_id
        assert not kinds & {BlipAttention, BlipTextSelfAttention}, model_id
