"""Word error rate as Whisper's papers score it: jiwer's alignment on text normalised by Whisper's own normaliser.

English text goes through transformers' `EnglishTextNormalizer` (with OpenAI's spelling map where a Whisper checkpoint
of the offline pack carries it), so "twenty" and "20", "Mr." and "mister" are no error; other languages through its
`BasicTextNormalizer` (case, punctuation and symbols only).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer
from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

from mmdemo.config import default_model_dir

# A checkpoint of the offline pack whose normalizer.json is OpenAI's English spelling map ("colour" -> "color").
SPELLING_MAP_SOURCES = ("openai/whisper-base", "openai/whisper-tiny.en")


@functools.cache
def spelling_map(model_dir: Path | None = None) -> dict[str, str]:
    """OpenAI's English spelling map from an installed offline Whisper pack; empty where none is installed."""
    root = model_dir or default_model_dir()
    for model_id in SPELLING_MAP_SOURCES:
        path = root / model_id / "normalizer.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


@functools.cache
def normalizer(language: str = "en"):
    """Whisper's normaliser for `language`: the English one for "en", the basic one otherwise."""
    return EnglishTextNormalizer(spelling_map()) if language == "en" else BasicTextNormalizer()


def normalize(text: str, language: str = "en") -> str:
    return " ".join(normalizer(language)(text).split())


@dataclass(frozen=True)
class WordErrors:
    """Errors of hypotheses against references, after normalisation."""

    substitutions: int
    deletions: int
    insertions: int
    words: int  # reference words

    @property
    def wer(self) -> float:
        edits = self.substitutions + self.deletions + self.insertions
        return edits / self.words if self.words else float(edits > 0)


def word_errors(references: Sequence[str], hypotheses: Sequence[str], language: str = "en") -> WordErrors:
    """The alignment counts over every (reference, hypothesis) pair; an empty normalised reference counts its
    hypothesis' words as insertions."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    subs = dels = ins = words = 0
    pairs = [(normalize(r, language), normalize(h, language)) for r, h in zip(references, hypotheses, strict=True)]
    scored = [(r, h) for r, h in pairs if r]
    ins += sum(len(h.split()) for r, h in pairs if not r)
    if scored:
        output = jiwer.process_words([r for r, _ in scored], [h if h else "" for _, h in scored])
        subs, dels, ins = output.substitutions, output.deletions, ins + output.insertions
        words = sum(len(r.split()) for r, _ in scored)
    return WordErrors(subs, dels, ins, words)


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Word error rate of one hypothesis, as a fraction (0.0 = perfect; can exceed 1)."""
    return word_errors([reference], [hypothesis], language).wer


def corpus_wer(pairs: Iterable[tuple[str, str]], language: str = "en") -> float:
    """Total edits over total reference words for (reference, hypothesis) pairs."""
    pairs = list(pairs)
    return word_errors([r for r, _ in pairs], [h for _, h in pairs], language).wer
