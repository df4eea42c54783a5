"""Beam search with the shared cross-attention cache: the cross-attention half is never copied, and captions of a
batch of images are token for token those of transformers' own cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import registry
from mmdemo.media import load_image
from mmdemo.media.pixels import reduce_for
from mmdemo.models.generation import CROSS_ATTENTION_DECODERS, SharedCrossAttentionCache, cache_kwargs

ASSETS = Path(__file__).resolve().parents[1] / "assets"
IMAGES = [ASSETS / "skimage_chelsea.png", ASSETS / "skimage_coffee.png", ASSETS / "skimage_astronaut.jpg"]


def test_reordering_beams_moves_self_attention_and_leaves_cross_attention_in_place():
    cache = SharedCrossAttentionCache()
    # Two inputs x two beams; layer 0. Self-attention: one distinct row per beam. Cross-attention: one row per input,
    # repeated for its beams (as generate() repeats the encoder output).
    own = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 5).contiguous()
    encoded = torch.tensor([10.0, 10.0, 20.0, 20.0]).view(4, 1, 1, 1).expand(4, 2, 7, 5).contiguous()
    cache.self_attention_cache.update(own, own + 100, 0)
    cache.cross_attention_cache.update(encoded, encoded + 100, 0)
    cross_keys = cache.cross_attention_cache.layers[0].keys

    cache.reorder_cache(torch.tensor([1, 1, 3, 2]))  # input 0 keeps beam 1 twice; input 1 swaps its beams

    assert cache.self_attention_cache.layers[0].keys[:, 0, 0, 0].tolist() == [1.0, 1.0, 3.0, 2.0]
    assert cache.self_attention_cache.layers[0].values[:, 0, 0, 0].tolist() == [101.0, 101.0, 103.0, 102.0]
    assert cache.cross_attention_cache.layers[0].keys is cross_keys  # not copied
    assert cache.cross_attention_cache.layers[0].keys[:, 0, 0, 0].tolist() == [10.0, 10.0, 20.0, 20.0]


def test_only_cross_attention_decoders_get_the_cache():
    assert isinstance(cache_kwargs("BlipForConditionalGeneration")["cache"], SharedCrossAttentionCache)
    assert cache_kwargs("GitForCausalLM") == {}  # decoder-only: the image is a prefix, there is no cross half
    assert cache_kwargs("BlipForConditionalGeneration")["cache"] is not cache_kwargs("BlipForConditionalGeneration")[
        "cache"]  # one per generate() call
    task_architectures = registry.get("captioning").architectures | registry.get("vqa").architectures
    assert CROSS_ATTENTION_DECODERS <= task_architectures


@pytest.mark.parametrize("model_id", ["Salesforce/blip-image-captioning-base", "nlpconnect/vit-gpt2-image-captioning"])
def test_batched_beam_search_equals_transformers_own_cache(tiny_runtime, model_id, monkeypatch):
    runtime = tiny_runtime(quantize="none")
    task = registry.get("captioning")
    spec = task.model_spec(model_id)
    inputs = [task.validate({"image": str(path), "model": model_id, "num_beams": 3, "num_captions": 3,
                             "max_new_tokens": 12}, runtime.settings) for path in IMAGES]
    reorders: list[torch.Tensor] = []
    reorder = SharedCrossAttentionCache.reorder_cache
    monkeypatch.setattr(SharedCrossAttentionCache, "reorder_cache",
                        lambda self, beam_idx: (reorders.append(beam_idx.clone()), reorder(self, beam_idx))[1])
    with runtime.predictor.bundles(task, {"model": spec}) as bundles, torch.inference_mode():
        shared = task.predict_batch(bundles, inputs)
        bundle = bundles["model"]
        images = [reduce_for(bundle.processor, i.image) for i in inputs]  # as the task hands them over
        pixels = bundle.prepare(bundle.processor(images=images, return_tensors="pt"))["pixel_values"]
        ids = bundle.model.generate(pixel_values=pixels, num_beams=3, num_return_sequences=3, max_new_tokens=12,
                                    do_sample=False)
    tokenizer = bundle.tokenizer or bundle.processor
    texts = [" ".join(t.split()) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    expected = [[t for t in texts[i * 3:(i + 1) * 3] if t] for i in range(len(IMAGES))]

    assert reorders, "beam search did not run through the shared cache"
    assert any(not torch.equal(idx, torch.arange(len(idx))) for idx in reorders), "no beam ever changed ancestor"
    assert all(captions for captions in shared)
    assert [captions[0] for captions in shared] == [e[0] for e in expected]
    for captions, reference in zip(shared, expected, strict=True):
        assert set(captions) <= set(reference)  # predict_batch drops repeats; what it keeps is transformers' output


def test_blip_vqa_beam_search_is_unchanged_by_the_cache(tiny_model_dir):
    path = tiny_model_dir / "Salesforce/blip-vqa-base"
    model = transformers.BlipForQuestionAnswering.from_pretrained(path).eval()
    processor = transformers.AutoProcessor.from_pretrained(path)
    images = [load_image(str(p)) for p in IMAGES]
    batch = processor(images=images, text=["what animal is this?"] * len(images), return_tensors="pt")
    with torch.inference_mode():
        default = model.generate(**batch, max_new_tokens=20, num_beams=3)
        shared = model.generate(**batch, max_new_tokens=20, num_beams=3, **cache_kwargs("BlipForQuestionAnswering"))
    assert default.shape[1] > 2
    assert torch.equal(shared, default)
