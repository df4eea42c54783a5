"""Word attributions for the sentiment text: which words made the verdict.

- A classifier (RoBERTa, DistilBERT): occlusion. Each word is left out in turn and the text scored again, all the
  variants in one batch; a word's attribution is how much the verdict's probability drops without it (negative:
  the verdict is surer without it). Occlusion was chosen over captum's Integrated Gradients: IG needs gradients
  through the text model, whose Linear layers run as fp16-weight packed layers on CPU (no autograd of their own),
  and 20-50 interpolation steps, each a forward and a backward pass; occlusion is one batched forward pass of
  (words + 1) rows and gives the same sign of evidence on short texts (docs/explain.md has the deletion figures).
- VADER: its own lexicon's valence for each word (what VADER adds up), scaled to -1..1.

Scores are scaled by the largest magnitude, so the strongest word is ±1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

MAX_WORDS = 64  # longer texts: only the first MAX_WORDS words are occluded one by one (said in the note)
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
