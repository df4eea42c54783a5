"""Word attributions for the sentiment text: which words made the verdict.

- A classifier (RoBERTa, DistilBERT): gradient × input on the word embeddings. One forward pass with the embedding
  layer's output as the tensor to differentiate, one `torch.autograd.grad` of the verdict's log-probability; a
  token's attribution is its embedding times that gradient, summed over the embedding, and a word's is the sum of
  its tokens' (positive: the word pushes the text toward the verdict). It costs a forward and a backward pass
  whatever the length (about 3x the plain call for RoBERTa base on CPU), where occlusion's batch of (words + 1)
  texts grows with the words (10x for 15 words). Integrated Gradients was not taken: with 4 steps in one batch it
  costs about 6x. Nor captum: its InputXGradient gives the very numbers of the few lines below, but importing
  captum.attr imports matplotlib, and its layer methods hook the shared model for every thread's requests.
  `occlusion` stays as the reference the deletion benchmark compares with (docs/explain.md has both figures).
- VADER: its own lexicon's valence for each word (what VADER adds up), scaled to -1..1.

Scores are scaled by the largest magnitude, so the strongest word is ±1.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from mmdemo.explain.grads import gradients_on, keep_transposed_weights, plain

MAX_WORDS = 64  # occlusion of longer texts: only the first MAX_WORDS words are left out one by one (said in the note)
GRADIENT_NOTE = ("Gradient × input: each word's embeddings times the gradient of the verdict's log-probability; "
                 "positive: the word pushes the text toward the verdict")
VADER_MAX_VALENCE = 4.0  # VADER's lexicon scores words from -4 to 4


def _scaled(scores: Sequence[float]) -> list[float]:
    top = max((abs(s) for s in scores), default=0.0)
    return [round(s / top, 4) if top > 0 else 0.0 for s in scores]


def occlusion(text: str, classify: Callable[[list[str]], list[Sequence[float]]], label: int
              ) -> tuple[list[dict[str, float | str]], str]:
    """Each word's drop in the probability of class `label` when it is left out.

    Args:
        classify: probabilities (negative, neutral, positive) for each of a list of texts, in one batch.
    Returns:
        [{"word", "score"}] in the text's order, and a note.
    """
    words = text.split()
    occluded = words[:MAX_WORDS]
    variants = [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(occluded))]
    probs = classify(variants)
    full = probs[0][label]
    scores = _scaled([full - p[label] for p in probs[1:]]) + [0.0] * (len(words) - len(occluded))
    note = "Occlusion: how much the verdict's probability drops when the word is left out"
    if len(words) > MAX_WORDS:
        note += f"; only the first {MAX_WORDS} of {len(words)} words are scored"
    return [{"word": w, "score": s} for w, s in zip(words, scores, strict=True)], note


def vader_words(text: str, lexicon: dict[str, float]) -> tuple[list[dict[str, float | str]], str]:
    """VADER's lexicon valence of each word (0 for words it does not know)."""
    words = text.split()
    raw = [float(lexicon.get(word.strip(".,!?;:\"'()").lower(), 0.0)) / VADER_MAX_VALENCE for word in words]
    scores = [round(max(-1.0, min(1.0, s)), 4) for s in raw]
    note = "VADER's own lexicon score of each word (positive words in one colour, negative in the other)"
    return [{"word": w, "score": s} for w, s in zip(words, scores, strict=True)], note


Classify = Callable[[list[str]], list[Sequence[float]]]


def batch_classifier(model: torch.nn.Module, tokenizer: Any, prepare: Callable[..., Any], max_length: int,
                     to_three: Callable[[list[float]], Sequence[float]]) -> Classify:
    """A `classify` for `occlusion`: the texts through the classifier in one padded batch, mapped to 3 classes."""

    def classify(texts: list[str]) -> list[Sequence[float]]:
        batch = prepare(tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
        probs = model(**batch).logits.float().softmax(dim=-1).tolist()
        return [to_three(p) for p in probs]

    return classify


# ------------------------------------------------------------------------------------------ gradient × input


class _EmbeddingLeaf:
    """The output of `layer` in this thread's next forward pass, replaced by a copy that autograd differentiates
    (`value`); a request on another thread meanwhile goes through the shared layer untouched."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.layer = layer
        self.value: torch.Tensor | None = None
        self._thread = threading.get_ident()

    def _replace(self, module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != self._thread or self.value is not None:
            return None
        self.value = plain(output).requires_grad_(True)
        return self.value

    @contextmanager
    def during(self) -> Iterator[_EmbeddingLeaf]:
        handle = self.layer.register_forward_hook(self._replace)
        try:
            yield self
        finally:
            handle.remove()


def token_gradient_x_input(model: torch.nn.Module, batch: dict[str, Any],
                           score: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's word embedding times the gradient of `score(logits of the first row)`, summed over the
    embedding: (tokens,); and the row's logits (the prediction the scores explain).

    One forward pass with autograd, from the embedding layer's output on, and one `torch.autograd.grad` to that
    output: nothing reaches a parameter's `.grad`, and the graph is freed on return. Packed Linear layers get a
    backward (`grads.differentiable`) from a transposed copy of their weight (`grads.keep_transposed_weights`).
    """
    keep_transposed_weights(model)  # which also makes its packed layers differentiable
    leaf = _EmbeddingLeaf(model.get_input_embeddings())
    with gradients_on():
        inputs = {name: plain(value) if isinstance(value, torch.Tensor) else value for name, value in batch.items()}
        with leaf.during():
            logits = model(**inputs).logits
        if leaf.value is None:
            raise RuntimeError(f"{type(model).__name__}'s forward pass did not go through its input embeddings")
        (grad,) = torch.autograd.grad(score(logits[0]), leaf.value)
        return (grad * leaf.value.detach()).float().sum(dim=-1)[0].detach(), logits[0].detach()


def word_sums(text: str, token_scores: Sequence[float], offsets: Sequence[tuple[int, int]],
              special: Sequence[int]) -> tuple[list[str], list[float], int]:
    """Token scores summed into the text's whitespace-separated words (`text.split()`), by the tokens' character
    spans.

    Args:
        offsets: each token's (start, end) in `text`; an empty span (RoBERTa's lone "Ġ" before a symbol) counts
            for the word starting there.
        special: 1 for the tokens the tokenizer added (<s>, [CLS], …): left out.
    Returns:
        The words, their sums, and how many leading words have a token (fewer than all: the text was truncated).
    """
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    starts = [start for start, _ in spans]
    sums = [0.0] * len(spans)
    reached = 0
    for score, (start, end), added in zip(token_scores, offsets, special, strict=True):
        if added:
            continue
        at = start if end <= start else end - 1  # a character of the token's own (BPE spans may start at a space)
        index = bisect_right(starts, at) - 1
        if index < 0 or at >= spans[index][1]:
            continue  # whitespace only
        sums[index] += float(score)
        reached = max(reached, index + 1)
    return [text[start:end] for start, end in spans], sums, reached


def gradient_x_input(text: str, model: torch.nn.Module, batch: dict[str, Any], offsets: Sequence[tuple[int, int]],
                     special: Sequence[int], score: Callable[[torch.Tensor], torch.Tensor]
                     ) -> tuple[list[dict[str, float | str]], str, torch.Tensor]:
    """Each word's gradient × input for the verdict: its tokens' embeddings times the gradient of `score`, summed.

    Args:
        batch: the text's tokens (one row) as the model takes them; offsets, special: each token's character span
            in `text` and whether the tokenizer added it (see `word_sums`).
        score: the scalar to explain from the row's logits: the verdict's log-probability.
    Returns:
        [{"word", "score"}] in the text's order (the words of `text.split()`), scaled so the strongest is ±1, a
        note, and the row's logits from the same forward pass.
    """
    token_scores, logits = token_gradient_x_input(model, batch, score)
    token_scores = token_scores.tolist()
    words, sums, reached = word_sums(text, token_scores, offsets, special)
    note = GRADIENT_NOTE
    if reached < len(words):
        note += f"; the model reads the first {len(token_scores)} tokens: only the first {reached} of {len(words)} " \
                "words are scored"
    return [{"word": w, "score": s} for w, s in zip(words, _scaled(sums), strict=True)], note, logits
