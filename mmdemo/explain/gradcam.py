"""GradCAM on the text's attention to the image (as LAVIS's `compute_gradcam`): which image patches the text read
for BLIP's answer (VQA) or for each word of a BLIP or GIT caption (LAVIS's text localization, on the captioner
itself). BLIP's text reads the image by cross-attention; GIT's decoder has the image's tokens in its own sequence,
so its map is the self-attention from the word's position to them.

For a cross-attention layer with probabilities A (heads, text tokens, patches) and the gradient of the explained
score on them, the map is mean over heads of (A ⊙ max(∂score/∂A, 0)), read at the text positions that matter:
- VQA: the score is the log-likelihood of the generated answer; the layer is the question encoder's, and the map
  averages the question's tokens (its first, [ENC], left out).
- Captioning: the score of a word is the log-probability of its tokens; the layer is the caption decoder's, and the
  map is the row of the position that predicts the word. All words at once: the caption is repeated in a batch, one
  row per word, each row's score its own word's, so that one backward pass gives every map.
The layer is LAVIS's choice, 8 of BLIP base's 12 (two thirds of the depth).

The plain call runs first, as always; for BLIP a hook keeps the image embeddings it computed, so the explain pass
re-runs only the text side (the question encoder and the answer decoder, or the caption decoder), never the vision
tower. GIT's forward takes only pixels, so its image encoder runs again (autograd never reaches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmdemo.explain.grads import AttentionRecorder, LayerInput, differentiable, gradients_on, plain, unit_grid
from mmdemo.models.loading import ModelBundle


def cross_attention_layer(layers: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """The explained cross-attention module: LAVIS's layer 8 of 12, two thirds of the depth."""
    return layers[min(len(layers) - 1, (2 * len(layers)) // 3)].crossattention.self


def patch_side(bundle: ModelBundle) -> int:
    config = bundle.model.config.vision_config
    return config.image_size // config.patch_size


def capture_image_embeds(module: torch.nn.Module) -> LayerInput:
    """What to hold around the plain call: the image embeddings handed to `module` (BLIP's question encoder or its
    caption decoder)."""
    return LayerInput(module, name="encoder_hidden_states")


def _gradcam(probs: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LAVIS's GradCAM: attention times its positive gradient, averaged over the heads (batch, text, patches)."""
    return (probs.detach() * grad.clamp(min=0)).float().mean(dim=1)


def _token_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t] | ids[:, :t]) for t >= 1: (batch, length - 1)."""
    return logits[:, :-1].float().log_softmax(dim=-1).gather(-1, ids[:, 1:, None])[..., 0]


def blip_vqa_map(bundle: ModelBundle, image_embeds: torch.Tensor, question: dict[str, torch.Tensor],
                 answer_ids: torch.Tensor) -> list[list[float]]:
    """The map of the patches behind BLIP's answer.

    Args:
        image_embeds: the vision tower's output (1, patches + 1, width), as the plain call computed it.
        question: the processor's input_ids and attention_mask for the question.
        answer_ids: the generated answer (1, length), the decoder's start token first.
    """
    model = differentiable(bundle.model)
    layer = cross_attention_layer(model.text_encoder.encoder.layer)
    recorder = AttentionRecorder(layer)
    with gradients_on():
        image = plain(image_embeds)[:1]
        ids, mask = plain(question["input_ids"]), plain(question["attention_mask"])
        with recorder.during():
            image_mask = torch.ones(image.shape[:2], dtype=torch.long, device=image.device)
            encoded = model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image,
                                         encoder_attention_mask=image_mask, return_dict=True).last_hidden_state
        answer = plain(answer_ids)
        answer = answer[:, : int((answer != model.config.text_config.pad_token_id).sum())]
        logits = model.text_decoder(input_ids=answer, attention_mask=torch.ones_like(answer),
                                    encoder_hidden_states=encoded, encoder_attention_mask=mask,
                                    return_dict=True).logits
        score = _token_log_probs(logits, answer).sum()
        (probs,) = recorder.probs
        (grad,) = torch.autograd.grad(score, probs)
    with torch.no_grad():
        cam = _gradcam(probs, grad)[0]  # (question tokens, image tokens)
        question_rows = mask[0].bool().clone()
        question_rows[0] = False  # [ENC]: the question's own tokens only
        side = patch_side(bundle)
        return unit_grid(cam[question_rows].mean(dim=0)[1:], side, side)  # the image's CLS token left out


def caption_words(tokenizer: Any, caption: str) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """The caption as the decoder reads it (start token, its tokens, end token) and its words, each with the
    positions of its tokens ("##" pieces join the word before them)."""
    pieces = tokenizer(caption, add_special_tokens=False).input_ids
    words: list[tuple[str, list[int]]] = []
    for position, token in enumerate(tokenizer.convert_ids_to_tokens(pieces), start=1):
        if token.startswith("##") and words:
            words[-1] = (words[-1][0] + token[2:], [*words[-1][1], position])
        else:
            words.append((token, [position]))
    return pieces, words


def caption_maps(bundle: ModelBundle, source: torch.Tensor, caption: str) -> list[dict[str, Any]]:
    """One map per word of `caption`: {"word", "grid"}.

    Args:
        source: BLIP: the image embeddings the plain call computed (the decoder reads them by cross-attention);
            GIT: the pixel values (its decoder reads the image tokens in its own sequence; the image encoder runs
            again, without autograd reaching it).
    """
    model = differentiable(bundle.model)
    tokenizer = bundle.tokenizer or bundle.processor.tokenizer
    pieces, words = caption_words(tokenizer, caption)
    if not words:
        return []
    git = bundle.architecture == "GitForCausalLM"
    start = tokenizer.cls_token_id if git else model.config.text_config.bos_token_id
    layers = model.git.encoder.layer if git else model.text_decoder.bert.encoder.layer
    chosen = layers[min(len(layers) - 1, (2 * len(layers)) // 3)]
    recorder = AttentionRecorder(chosen.attention.self if git else chosen.crossattention.self)
    with gradients_on():
        ids = torch.tensor([[start, *pieces, tokenizer.sep_token_id]], device=bundle.device).expand(len(words), -1)
        source = plain(source)[:1]
        with recorder.during():
            if git:
                logits = model(input_ids=ids, pixel_values=source, return_dict=True).logits
                image_tokens = logits.shape[1] - ids.shape[1]
                logits = logits[:, image_tokens:]
            else:
                logits = model.text_decoder(input_ids=ids, attention_mask=torch.ones_like(ids),
                                            encoder_hidden_states=source.expand(len(words), -1, -1),
                                            return_dict=True).logits
        log_probs = _token_log_probs(logits, ids)  # column t - 1 scores token t
        score = sum(log_probs[row, [p - 1 for p in positions]].sum() for row, (_, positions) in enumerate(words))
        (probs,) = recorder.probs
        (grad,) = torch.autograd.grad(score, probs)
    with torch.no_grad():
        cam = _gradcam(probs, grad)  # (words, queries, keys)
        side = patch_side(bundle)
        maps = []
        for row, (word, positions) in enumerate(words):
            if git:  # queries and keys: the image's tokens (its CLS first), then the text's
                rows = cam[row, [image_tokens + p - 1 for p in positions], 1:image_tokens]
            else:
                rows = cam[row, [p - 1 for p in positions], 1:]
            maps.append({"word": word, "grid": unit_grid(rows.mean(dim=0), side, side)})
        return maps
