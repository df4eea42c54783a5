"""generate() settings shared by the tasks whose decoder attends to an encoded image (captioning, BLIP VQA).

Beam search keeps each beam's keys and values in a cache and, after every step, reorders the cache so that each
beam carries its chosen ancestor's. For a decoder with cross-attention, half of that cache holds the keys and values
of the encoder's output, which generate() repeated once per beam of an input: reordering among an input's own beams
leaves that half unchanged, yet transformers' EncoderDecoderCache copies all of it at every step. For BLIP on
CPU that copy was a third of the time of a batch of 8 captions (24 beams x 577 image tokens x 12 layers per step).
`SharedCrossAttentionCache` reorders only the self-attention half; the output is the same token for token. BLIP's
cross-attention goes further under it (`mmdemo.models.attention`): it keeps one copy of each image's keys and values.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

# Architectures whose generate() runs a decoder with cross-attention over an EncoderDecoderCache.
CROSS_ATTENTION_DECODERS = frozenset({
    "BlipForConditionalGeneration", "BlipForQuestionAnswering", "VisionEncoderDecoderModel",
})


class SharedCrossAttentionCache(EncoderDecoderCache):
    """An EncoderDecoderCache whose cross-attention half stays in place when beam search reorders the beams.

    Exact because beam search only reorders beams within an input (each new beam descends from a beam of the same
    input) and every beam of an input attends to the same encoder output. Use a new one for each generate() call.
    `copies`: how many consecutive rows of the encoder output are one image's copies, once a layer that keeps one
    copy (`mmdemo.models.attention.SharedImageCrossAttention`) has found out; its cross-attention half then holds
    one row per image.
    """

    def __init__(self) -> None:
        super().__init__(DynamicCache(), DynamicCache())
        self.copies: int | None = None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


def cache_kwargs(architecture: str) -> dict[str, Any]:
    """Extra generate() arguments for a model of `architecture`: a fresh shared cross-attention cache, or none."""
    return {"cache": SharedCrossAttentionCache()} if architecture in CROSS_ATTENTION_DECODERS else {}
