"""Tiny random-weight checkpoints of the app's curated models, built offline.

The Hugging Face hub cannot be reached where the tests run, so the tests build small checkpoints (hidden size
32-64, 2 layers, own small vocabularies) from the *real* transformers architecture classes, seeded and
deterministic, and save them with ``save_pretrained`` -- config, weights, generation config, tokenizer and
processor files -- into ``<root>/<org>/<name>`` directories named after the real hub ids.  Pointing the app's
local model directory (``MMDEMO_MODEL_DIR``) at ``root`` makes it load them by their real ids.

Public API: ``TINY_MODEL_IDS``, ``build_tiny_model(model_id, root)``, ``ensure_tiny_models(root, ids)``; also
``CHAIN_WORDS`` (the words the generative decoders say), ``MARKER_FILE`` and ``builder_version()``.

Random weights give degenerate outputs (constant scores, empty or looping text), so a few weights are set on
purpose (`tiny_weights`).  Classifiers and the vision towers get wider init ranges.  The generative decoders (BLIP,
GIT, ViT-GPT2, Whisper) walk fixed chains of ``CHAIN_WORDS``: the context (image, question, audio) picks the first
word, each word has one successor or end-of-text, so greedy ``generate()`` says 1-5 real words and stops by itself,
e.g. "man bed field white".  Whisper on noise always says the same words (the audio barely changes the encoder).
Vocabularies are written by hand (`tiny_vocab`: BPE merges and the sentencepiece model are derived
deterministically from a fixed word list), never trained.  Building all of them takes seconds and about 25 MB.

The builders live by kind: `tiny_vision_language`, `tiny_speech`, `tiny_text_classifiers`; this module holds the
registry of checkpoints (id -> builder and seed) and builds them into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mmdemo.testing import tiny_speech, tiny_text_classifiers, tiny_vision_language, tiny_vocab, tiny_weights
from mmdemo.testing.tiny_speech import build_whisper_english, build_whisper_multilingual
from mmdemo.testing.tiny_text_classifiers import build_distilbert_sst2, build_roberta_sentiment
from mmdemo.testing.tiny_vision_language import (
    build_blip_caption,
    build_blip_vqa,
    build_clip,
    build_git,
    build_siglip,
    build_vilt,
    build_vit_gpt2,
)
from mmdemo.testing.tiny_weights import CHAIN_WORDS

__all__ = ["CHAIN_WORDS", "MARKER_FILE", "TINY_MODEL_IDS", "build_tiny_model", "builder_version",
           "ensure_tiny_models"]

MARKER_FILE = ".tiny_model_builder"

# hub id -> (builder writing the checkpoint into an empty directory, its seed)
_BUILDERS: dict[str, tuple[Callable[[Path, int], None], int]] = {
    "Salesforce/blip-vqa-base": (build_blip_vqa, 101),
    "Salesforce/blip-vqa-capfilt-large": (build_blip_vqa, 102),
    "dandelin/vilt-b32-finetuned-vqa": (build_vilt, 103),
    "Salesforce/blip-image-captioning-base": (build_blip_caption, 104),
    "Salesforce/blip-image-captioning-large": (build_blip_caption, 105),
    "microsoft/git-base-coco": (build_git, 106),
    "nlpconnect/vit-gpt2-image-captioning": (build_vit_gpt2, 107),
    "openai/clip-vit-base-patch32": (build_clip, 108),
    "openai/clip-vit-large-patch14": (build_clip, 109),
    "google/siglip-base-patch16-224": (build_siglip, 110),
    "openai/whisper-base": (build_whisper_multilingual, 111),
    "openai/whisper-tiny": (build_whisper_multilingual, 112),
    "openai/whisper-small": (build_whisper_multilingual, 113),
    "distil-whisper/distil-small.en": (build_whisper_english, 114),
    "cardiffnlp/twitter-roberta-base-sentiment-latest": (build_roberta_sentiment, 115),
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": (build_distilbert_sst2, 116),
}

TINY_MODEL_IDS: tuple[str, ...] = tuple(_BUILDERS)

# Every module whose source decides what a checkpoint holds: a change to any of them rebuilds the checkpoints.
_BUILDER_MODULES = (tiny_vocab, tiny_weights, tiny_vision_language, tiny_speech, tiny_text_classifiers)


def builder_version() -> str:
    """Hash of the builders' sources and of the transformers version: a change of either rebuilds the checkpoints."""
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for module in _BUILDER_MODULES:
        digest.update(Path(module.__file__).read_bytes())
    digest.update(transformers.__version__.encode())
    return digest.hexdigest()


def _is_current(target: Path, version: str) -> bool:
    marker = target / MARKER_FILE
    try:
        return marker.read_text(encoding="utf-8").strip() == version
    except OSError:
        return False


def build_tiny_model(model_id: str, root: Path) -> Path:
    """Build the tiny checkpoint for ``model_id`` into ``root/<org>/<name>`` (replacing what is there); return it.

    The checkpoint is written into a temporary directory next to the target and renamed into place at the end, so
    a half-written model never appears under its real id.
    """
    if model_id not in _BUILDERS:
        raise KeyError(f"no tiny builder for {model_id!r}; known: {', '.join(TINY_MODEL_IDS)}")
    builder, seed = _BUILDERS[model_id]
    root = Path(root)
    target = root.joinpath(*model_id.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    version = builder_version()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        builder(tmp, seed)
        (tmp / MARKER_FILE).write_text(version + "\n", encoding="utf-8")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "model")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process renamed a fresh build into place first: keep theirs when it is current
            if not _is_current(target, version):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def ensure_tiny_models(root: Path, ids: Iterable[str] = TINY_MODEL_IDS) -> Path:
    """Build every model of ``ids`` that is missing under ``root`` or was built by another builder version."""
    root = Path(root)
    version = builder_version()
    for model_id in ids:
        target = root.joinpath(*model_id.split("/"))
        if not _is_current(target, version):
            build_tiny_model(model_id, root)
    return root
