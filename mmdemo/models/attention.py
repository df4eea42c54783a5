"""Faster attention for BLIP, whose transformers code computes attention by hand (matmul, scale, softmax, matmul).

Same math, less work, in two places:
- The vision encoder's self-attention runs as one fused kernel (torch's `scaled_dot_product_attention`, flash
  attention on CPU and GPU) instead of writing and reading every 577 x 577 score matrix.
- The text decoder's cross-attention keeps one copy of each image. generate() repeats the encoder's output once per
  beam (or sample) of an input, and transformers projected keys and values for every copy, kept them all, and read
  them all at every step. Here identical rows of the encoder's output (an input's beams; equal images sent by
  different visitors) are found once per generate() call: their keys and values are projected and kept once, and
  their queries attend to them together. Needs the `SharedCrossAttentionCache` (which leaves the cross-attention
  half in place when beams are reordered); with any other cache the layer is transformers' own.

Both give the same tokens, faster (`python -m benchmarks.fused_attention`; docs/performance.md has the figures).
ViLT's attention done the same way measured no faster (its ~200 tokens leave little to fuse): it keeps transformers'.
`fuse_attention(model)` switches a loaded model's modules to these classes (weights untouched); `load_bundle` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

from mmdemo.models.generation import SharedCrossAttentionCache


class FusedBlipAttention(BlipAttention):
    """BLIP's vision self-attention through `scaled_dot_product_attention` (no attention weights returned)."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        if kwargs.get("output_attentions"):
            return super().forward(hidden_states, **kwargs)
        batch, length, width = hidden_states.shape
        query, key, value = (self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
                             .permute(2, 0, 3, 1, 4))
        context = F.scaled_dot_product_attention(query, key, value, scale=self.scale,
                                                 dropout_p=self.dropout.p if self.training else 0.0)
        return self.projection(context.transpose(1, 2).reshape(batch, length, width)), None


class SharedImageCrossAttention(BlipTextSelfAttention):
    """BLIP's text attention whose cross-attention, under a `SharedCrossAttentionCache`, keeps each distinct row of
    the encoder's output once; self-attention, and cross-attention under other caches, are transformers' own."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, cache=None, **kwargs):
        if (encoder_hidden_states is None or not isinstance(cache, SharedCrossAttentionCache)
                or kwargs.get("output_attentions")):
            return super().forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                   cache=cache, **kwargs)
        # As transformers' layer: cross-attention is masked by encoder_attention_mask alone (None from BLIP's layers).
        mask = encoder_attention_mask
        heads, size = self.num_attention_heads, self.attention_head_size
        if cache.is_updated.get(self.layer_idx):
            kept = cache.cross_attention_cache.layers[self.layer_idx]
            keys, values = kept.keys, kept.values
        else:
            if cache.copies is None:  # the first cross-attention layer of this generate() call finds the copies
                cache.copies = repeated_rows(encoder_hidden_states, mask)
            distinct = encoder_hidden_states[::cache.copies]
            shape = (*distinct.shape[:2], heads, size)
            keys = self.key(distinct).view(shape).transpose(1, 2)
            values = self.value(distinct).view(shape).transpose(1, 2)
            keys, values = cache.cross_attention_cache.update(keys, values, self.layer_idx)
            cache.is_updated[self.layer_idx] = True
        rows, length = hidden_states.shape[:2]
        images = keys.shape[0]
        copies = rows // images
        # The copies' queries side by side: (images, heads, copies x length, size) against one image's keys.
        query = (self.query(hidden_states).view(images, copies, length, heads, size).permute(0, 3, 1, 2, 4)
                 .reshape(images, heads, copies * length, size))
        if mask is not None:
            mask = mask[::copies].to(query.device)
        context = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask,
                                                 dropout_p=self.dropout.p if self.training else 0.0)
        context = context.view(images, heads, copies, length, size).permute(0, 2, 3, 1, 4)
        return context.reshape(rows, length, heads * size), None


def repeated_rows(states: torch.Tensor, mask: torch.Tensor | None = None) -> int:
    """The largest n such that `states` is made of groups of n consecutive identical rows (with identical mask rows).

    generate() repeats each input's row once per beam, so n is at least the beam count; equal inputs side by side
    make it larger. One comparison over the whole tensor (one device sync).
    """
    same = (states[1:] == states[:-1]).flatten(1).all(1)
    if mask is not None:
        same &= (mask[1:] == mask[:-1]).flatten(1).all(1)
    runs, run = [], 1
    for equal in same.tolist():
        if equal:
            run += 1
        else:
            runs.append(run)
            run = 1
    runs.append(run)
    return math.gcd(*runs)


# transformers' class -> the subclass `fuse_attention` gives its modules.
FUSED_CLASSES = {BlipAttention: FusedBlipAttention, BlipTextSelfAttention: SharedImageCrossAttention}


def fuse_attention(model: torch.nn.Module) -> int:
    """Switch `model`'s BLIP attention modules to the classes above, in place; returns how many."""
    switched = 0
    for module in model.modules():
        fused = FUSED_CLASSES.get(type(module))
        if fused is not None:
            module.__class__ = fused
            switched += 1
    return switched
