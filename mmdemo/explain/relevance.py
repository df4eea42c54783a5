"""Chefer et al.'s relevance maps (ICCV 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers") for the zero-shot models' vision transformers, on transformers' own modules.

For each explained layer l, with A_l its attention probabilities (batch, heads, tokens, tokens) and the gradient of
the explained score on them, the relevance of every token to every token starts at the identity and grows by

    Ā_l = mean over heads of (∂score/∂A_l ⊙ A_l) clamped at 0,      R ← R + Ā_l · R.

CLIP pools its CLS token: the map is R[CLS, patches]. SigLIP pools with an attention head (one probe attending over
the patches): its gradient-weighted attention row Ā_head is the row read out, Ā_head · R.

How it runs without changing the prediction or the app's SDPA attention: the plain call runs as always, while a
hook keeps the hidden states entering the first explained layer; then only the explained layers are run again here,
by hand, with their attention written out (so the probabilities exist as tensors), once for the image, and one
batched `torch.autograd.grad` call (a vmap over the labels) gives every layer's gradient for each label. The
model's config, its attention implementation and its parameters' `.grad` are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmdemo.explain.grads import LayerInput, differentiable, gradients_on, plain, unit_grid
from mmdemo.models.loading import ModelBundle

# How many of the transformer's last layers the relevance propagates through (Chefer's code for CLIP takes the last
# one by default, its paper all). Fewer cost less: the pass re-runs only those layers, and differentiates them.
# A third of a base model's 12 keeps an explained zero-shot call within 3x the plain one on CPU (docs/explain.md
# has the cost for 1, 4 and 12 and the deletion figures). `layers` arguments below: None for this default.
EXPLAINED_LAYERS = 4


def _vision(bundle: ModelBundle) -> torch.nn.Module:
    return bundle.model.vision_model


def _first(count: int, layers: int | None) -> int:
    """The first explained layer of `count`, for the last `layers` of them (None: EXPLAINED_LAYERS)."""
    return max(0, count - (EXPLAINED_LAYERS if layers is None else layers))


def first_explained_layer(bundle: ModelBundle, layers: int | None = None) -> int:
    return _first(len(_vision(bundle).encoder.layers), layers)


def capture_for_zero_shot(bundle: ModelBundle, layers: int | None = None) -> LayerInput:
    """What to hold around the plain image pass: it records the input of the first explained layer."""
    return LayerInput(_vision(bundle).encoder.layers[first_explained_layer(bundle, layers)])


def eager_attention(attention: torch.nn.Module, hidden: torch.Tensor,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A CLIP/SigLIP attention module's output and its probabilities (batch, heads, tokens, tokens), computed
    step by step from its own projections (what transformers' eager attention does)."""
    batch, tokens, width = hidden.shape
    heads = attention.num_heads
    shape = (batch, tokens, heads, width // heads)
    query = attention.q_proj(hidden).view(shape).transpose(1, 2)
    key = attention.k_proj(hidden).view(shape).transpose(1, 2)
    value = attention.v_proj(hidden).view(shape).transpose(1, 2)
    scores = query @ key.transpose(-1, -2) * attention.scale
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    context = (probs @ value).transpose(1, 2).reshape(batch, tokens, width)
    return attention.out_proj(context), probs


def _encoder_layer(layer: torch.nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One CLIP/SigLIP encoder layer (pre-norm attention, then pre-norm MLP) and its attention probabilities."""
    attended, probs = eager_attention(layer.self_attn, layer.layer_norm1(hidden))
    hidden = hidden + attended
    return hidden + layer.mlp(layer.layer_norm2(hidden)), probs


def _pooling_head(head: torch.nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SigLIP's attention-pooling head (torch's MultiheadAttention, probe as the query) and its probabilities
    (batch, heads, 1, tokens), written out from the module's packed projections."""
    attention = head.attention
    batch, tokens, width = hidden.shape
    heads = attention.num_heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
    probe = head.probe.expand(batch, -1, -1)
    query = torch.nn.functional.linear(probe, w_q, b_q).view(batch, 1, heads, -1).transpose(1, 2)
    key = torch.nn.functional.linear(hidden, w_k, b_k).view(batch, tokens, heads, -1).transpose(1, 2)
    value = torch.nn.functional.linear(hidden, w_v, b_v).view(batch, tokens, heads, -1).transpose(1, 2)
    probs = (query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5).softmax(dim=-1)
    pooled = attention.out_proj((probs @ value).transpose(1, 2).reshape(batch, 1, width))
    pooled = pooled + head.mlp(head.layernorm(pooled))
    return pooled[:, 0], probs


def image_embedding_with_attention(bundle: ModelBundle, hidden: torch.Tensor, start: int
                                   ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """From the hidden states entering layer `start`: the unit image embedding, each layer's attention
    probabilities from `start` on, and SigLIP's pooling-head probabilities (None for CLIP)."""
    vision = _vision(bundle)
    probs = []
    for layer in vision.encoder.layers[start:]:
        hidden, layer_probs = _encoder_layer(layer, hidden)
        probs.append(layer_probs)
    if bundle.architecture == "SiglipModel":
        embedding, head_probs = _pooling_head(vision.head, vision.post_layernorm(hidden))
    else:
        embedding = bundle.model.visual_projection(vision.post_layernorm(hidden[:, 0]))
        head_probs = None
    embedding = embedding.float()
    return embedding / embedding.norm(dim=-1, keepdim=True), probs, head_probs


def zero_shot_maps(bundle: ModelBundle, layer_input: torch.Tensor, text_embeds: torch.Tensor,
                   layers: int | None = None) -> tuple[list[list[list[float]]], torch.Tensor]:
    """One relevance map per row of `text_embeds` (unit label embeddings) for one image.

    Args:
        layer_input: the hidden states (1, tokens, width) entering the first explained layer, as the plain pass
            saw them (`capture_for_zero_shot`).
        text_embeds: the explained labels' unit embeddings (labels, dim), as the plain call scored them.
    Returns:
        The maps (patch rows x patch columns, 0-1), and the explained logits (labels,), which equal the plain
        call's for those labels up to float rounding (a check that the pass re-ran the same model).
    """
    config = bundle.model.config.vision_config
    side = config.image_size // config.patch_size
    count = len(text_embeds)
    with gradients_on():
        hidden = plain(layer_input).requires_grad_(True)
        text = plain(text_embeds).float()
        image, probs, head_probs = image_embedding_with_attention(bundle, hidden, first_explained_layer(bundle, layers))
        logits = bundle.model.logit_scale.float().exp() * (image @ text.T)[0]  # (labels,)
        if bundle.architecture == "SiglipModel":
            logits = logits + bundle.model.logit_bias.float()
        wanted = probs + ([head_probs] if head_probs is not None else [])
        # One forward pass, one batched backward pass: row i of each gradient is label i's (vmap over the rows of
        # the identity as the logits' cotangents).
        grads = torch.autograd.grad(logits, wanted, grad_outputs=torch.eye(count, device=logits.device),
                                    is_grads_batched=True)
        grads = [grad[:, 0] for grad in grads]  # (labels, heads, queries, keys): the one image's row
    with torch.no_grad():
        copies = [p.detach().expand(count, *p.shape[1:]) for p in probs]
        relevance = propagate(copies, grads[:len(probs)])
        if head_probs is None:
            rows = relevance[:, 0, 1:]  # CLS reads the image; the map is over the patches after it
        else:
            head = _weighted(head_probs.detach().expand(count, *head_probs.shape[1:]), grads[-1])  # (labels, 1, tokens)
            rows = (head @ relevance)[:, 0]
        maps = [unit_grid(row, side, side) for row in rows]
    return maps, logits.detach()


def _weighted(probs: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Chefer's Ā: the gradient-weighted attention, negative parts dropped, averaged over the heads."""
    return (grad * probs).float().clamp(min=0).mean(dim=1)


def propagate(probs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """R = I, then R ← R + Ā_l · R for each layer in order: (batch, tokens, tokens)."""
    batch, _, tokens, _ = probs[0].shape
    relevance = torch.eye(tokens, device=probs[0].device).expand(batch, tokens, tokens)
    for layer_probs, layer_grad in zip(probs, grads, strict=True):
        relevance = relevance + _weighted(layer_probs, layer_grad) @ relevance
    return relevance


# ------------------------------------------------------------------------------------------------------------ ViLT


def vilt_answer_map(bundle: ModelBundle, batch: dict[str, torch.Tensor], layers: int | None = None
                    ) -> tuple[torch.Tensor, list[list[float]]]:
    """ViLT's answer logits for one image and question, and the relevance of the image's patches to the top answer.

    ViLT is single-stream: the question's tokens and the image's patches go through one transformer, and its pooler
    reads the first (text CLS) token; the map is that token's row of R over the image patches. The pass is ViltModel's
    forward step by step (the embeddings, the layers, the pooler) so that it knows where each patch went: ViLT's
    embeddings keep the patches in a random order (`visual_embed`'s sampling), which its forward does not return.
    The layers before the explained ones run without autograd.

    Returns:
        The logits (answers,), those of the plain forward pass up to float rounding, and the map (patch rows x
        patch columns, 0-1).
    """
    from transformers.masking_utils import create_bidirectional_mask

    model = differentiable(bundle.model)
    vilt = model.vilt
    embeddings = vilt.embeddings
    encoder_layers = vilt.encoder.layer
    start = _first(len(encoder_layers), layers)
    with gradients_on():
        with torch.no_grad():
            input_ids = plain(batch["input_ids"])
            text_mask = plain(batch.get("attention_mask", torch.ones_like(input_ids)))
            pixel_values = plain(batch["pixel_values"])
            pixel_mask = plain(batch.get("pixel_mask", torch.ones(pixel_values.shape[0], *pixel_values.shape[2:],
                                                                   dtype=torch.long, device=pixel_values.device)))
            text = embeddings.text_embeddings(input_ids=input_ids, token_type_ids=batch.get("token_type_ids"))
            image, image_mask, (patch_index, _) = embeddings.visual_embed(
                pixel_values, pixel_mask, max_image_length=model.config.max_image_length)
            text = text + embeddings.token_type_embeddings(torch.zeros_like(text_mask, dtype=torch.long))
            image = image + embeddings.token_type_embeddings(torch.ones_like(image_mask, dtype=torch.long))
            hidden = torch.cat([text, image], dim=1)
            mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                             attention_mask=torch.cat([text_mask, image_mask], dim=1))
            for layer in encoder_layers[:start]:
                hidden = layer(hidden, mask, False)[0]
        hidden = hidden.detach().requires_grad_(True)
        probs = []
        for layer in encoder_layers[start:]:
            hidden, layer_probs = layer(hidden, mask, True)
            probs.append(layer_probs)
        logits = model.classifier(vilt.pooler(vilt.layernorm(hidden)))[0].float()
        top = int(logits.argmax())
        grads = torch.autograd.grad(logits[top], probs)
    with torch.no_grad():
        relevance = propagate([p.detach() for p in probs], list(grads))[0, 0]  # the text CLS token's row
        first_patch = text.shape[1] + 1  # the text tokens, then the image's own CLS token
        rows, cols = (int(patch_index[0, :, 0].max()) + 1, int(patch_index[0, :, 1].max()) + 1)
        grid = torch.zeros(rows * cols, device=relevance.device)
        positions = patch_index[0, :, 0] * cols + patch_index[0, :, 1]
        grid[positions] = relevance[first_patch:first_patch + len(positions)].float()
    return logits.detach(), unit_grid(grid, rows, cols)
