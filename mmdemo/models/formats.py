"""The CPU number formats: which format each architecture runs in on CPU (MMDEMO_QUANTIZE).

On a GPU every model runs in the runtime's dtype. On CPU in float32, `auto` picks, per architecture, the format
measured to be faster at the same output; `python -m benchmarks.linear_formats` and `python -m benchmarks.cpu_bf16`
give the evidence, and docs/performance.md has their figures.
"""

from __future__ import annotations

import torch

from mmdemo.models.devices import cpu_computes_bf16, dtype_name
from mmdemo.models.loading import QUANTIZATIONS

QUANTIZE_MODES = ("auto", *QUANTIZATIONS, "bf16", "none")
# MMDEMO_QUANTIZE=auto on CPU: each architecture's Linear format where it saves time at the same output; fp32
# elsewhere. fp16 weights (fp32 arithmetic) read half the bytes, which is what short texts and token-by-token
# decoding wait for, and give Whisper fp32's very words. Whisper's int8 layers were faster still, but without
# AVX512-VNNI their 7-bit activations cost words on held-out speech (`python -m benchmarks.speech_accuracy`).
# CLIP and SigLIP stay fp32: the fp16 measurements disagree with each other.
CPU_DEFAULT_QUANTIZATION = {
    "WhisperForConditionalGeneration": "fp16",
    "BlipForConditionalGeneration": "fp16",
    "BlipForQuestionAnswering": "fp16",
    "ViltForQuestionAnswering": "fp16",
    "RobertaForSequenceClassification": "fp16",
    "DistilBertForSequenceClassification": "fp16",  # the same kind of encoder as RoBERTa
}
# ... and where the CPU multiplies bf16 natively (devices.cpu_computes_bf16), the architectures that run faster as
# whole bf16 models, the precision they get on a GPU. BLIP, RoBERTa and Whisper measured faster in their format above.
CPU_BF16_ARCHITECTURES = frozenset({"ViltForQuestionAnswering", "CLIPModel", "SiglipModel"})
# How the cache report and each result's provenance name a format.
_LABELS = {"int8": "int8", "fp16": "fp16-weights", "bf16": "bfloat16"}
# Expected in-memory size against fp32 for each format, until the loaded model is measured.
_SIZE_FACTORS = {"int8": 0.5, "fp16": 0.6, "bf16": 0.5}


def check_quantize_setting(setting: str) -> None:
    if setting not in QUANTIZE_MODES:
        raise ValueError(f"Unknown quantize setting {setting!r}: choose {', '.join(QUANTIZE_MODES)}")


def cpu_format(architecture: str, *, device: str, dtype: torch.dtype, setting: str) -> str | None:
    """The format of a model of `architecture`: its Linear layers' ("int8", "fp16"), the whole model in "bf16", or
    None (the runtime's dtype). Only on CPU in fp32 (an explicit MMDEMO_DTYPE wins); `auto` picks the measured wins."""
    if device != "cpu" or setting == "none" or dtype != torch.float32:
        return None
    if setting == "auto":
        if architecture in CPU_BF16_ARCHITECTURES and cpu_computes_bf16():
            return "bf16"
        return CPU_DEFAULT_QUANTIZATION.get(architecture)
    return setting


def format_dtype(fmt: str | None, dtype: torch.dtype) -> torch.dtype:
    """The dtype a model in `fmt` is loaded in."""
    return torch.bfloat16 if fmt == "bf16" else dtype


def format_label(fmt: str | None, dtype: torch.dtype) -> str:
    """The format's name in cache keys, the cache report and each result's provenance."""
    return _LABELS[fmt] if fmt else dtype_name(dtype)


def size_factor(fmt: str | None) -> float:
    return _SIZE_FACTORS.get(fmt, 1.0)
