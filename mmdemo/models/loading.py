"""Loading a checkpoint directory into a model bundle (model + processor) on a device.

A bundle depends only on the checkpoint (its config names the architecture), so every task that asks
for the same model id gets the same bundle and the cache can share it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from mmdemo.errors import ModelUnavailableError
from mmdemo.models.devices import cpu_supports, device_map_for
from mmdemo.models.memo import Memo
from mmdemo.models.sources import WEIGHT_SUFFIXES

log = logging.getLogger(__name__)

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclass(frozen=True, order=True)
class ModelKey:
    """What makes two loads the same model: two tabs asking for an equal key share one entry."""

    model_id: str
    revision: str | None
    device: str
    dtype: str

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.model_id}{revision} ({self.device}, {self.dtype})"


@dataclass
class ModelBundle:
    """A model ready for inference and what turns raw inputs into its tensors."""

    model: torch.nn.Module
    processor: Any  # a transformers processor, or a tokenizer / image processor / feature extractor
    architecture: str
    tokenizer: Any = None  # set where the processor alone does not decode (ViT-GPT2)
    nbytes: int = 0
    memo: Memo = field(default_factory=Memo)  # what tasks derive from the model and reuse (prompt embeddings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Move a processor's output to the model's device, floats cast to the model's dtype."""
        device, dtype = self.device, self.dtype
        return {
            name: (value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device))
            if isinstance(value, torch.Tensor) else value
            for name, value in batch.items()
        }


def model_name(path: Path) -> str:
    """`org/name` for a checkpoint directory, as visitors know the model (not the server's path)."""
    return f"{path.parent.name}/{path.name}"


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelUnavailableError("error.model.no_config", model=model_name(path)) from e


def architecture_of(path: Path) -> str:
    architectures = read_config(path).get("architectures") or []
    if not architectures:
        raise ModelUnavailableError("error.model.no_architecture", path=str(path))
    return architectures[0]


def estimate_nbytes(path: Path, dtype: torch.dtype) -> int:
    """Expected in-memory size: weight files scaled from their stored precision to `dtype`."""
    files = [p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES]
    if any(p.suffix == ".safetensors" for p in files):
        files = [p for p in files if p.suffix == ".safetensors"]
    stored = read_config(path).get("dtype") or read_config(path).get("torch_dtype") or "float32"
    scale = _DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 4) / _DTYPE_BYTES.get(str(stored), 4)
    return int(sum(p.stat().st_size for p in files) * scale)


def require_architecture(path: Path, allowed: frozenset[str]) -> str:
    """The checkpoint's architecture, if it is one the asking task can drive."""
    architecture = architecture_of(path)
    if architecture not in allowed:
        raise ModelUnavailableError("error.model.wrong_architecture", architecture=architecture,
                                    supported=", ".join(sorted(allowed)))
    return architecture


def _model_class(architecture: str) -> type:
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise ModelUnavailableError("error.model.unknown_architecture", version=transformers.__version__,
                                    architecture=architecture)
    return cls


def import_model_code(architectures: Iterable[str]) -> None:
    """Import transformers' classes for `architectures` (those transformers lacks are skipped).

    The first one costs seconds (transformers' modeling and generation stack), the rest far less: done once, ahead
    of the first request, it is not part of anyone's first click.
    """
    for architecture in architectures:
        with suppress(ModelUnavailableError):
            _model_class(architecture)


def _load_processor(path: Path, architecture: str) -> tuple[Any, Any]:
    """The processor for an architecture, and a separate tokenizer where it is needed for decoding."""
    import transformers

    if architecture == "VisionEncoderDecoderModel":
        # AutoProcessor returns only the tokenizer for ViT-GPT2: load both halves.
        return (transformers.AutoImageProcessor.from_pretrained(path),
                transformers.AutoTokenizer.from_pretrained(path))
    if architecture.endswith("ForSequenceClassification") and not architecture.startswith(("Wav2Vec2", "Hubert")):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        return tokenizer, tokenizer
    if architecture.startswith(("Wav2Vec2", "Hubert")):
        return transformers.AutoFeatureExtractor.from_pretrained(path), None
    processor = transformers.AutoProcessor.from_pretrained(path)
    return processor, getattr(processor, "tokenizer", None)


def _check_vocabulary(tokenizer: Any) -> None:
    """transformers quietly builds an empty tokenizer when its files are missing: refuse it (as corrupt files)."""
    if tokenizer is not None and len(tokenizer) <= len(set(tokenizer.all_special_ids)) + 1:
        raise ValueError(f"the tokenizer has only {len(tokenizer)} tokens")


# The CPU weight formats for Linear layers (MMDEMO_QUANTIZE), each with its torch dynamic quantization.
QUANTIZATIONS = ("int8", "fp16")


def quantize_linear(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Dynamic quantization of every Linear layer, in place, for CPU inference.

    "int8": int8 weights per output channel, activations quantized on the fly (per-tensor scales cost Whisper a
    word in a hundred on our clips, per-channel none). "fp16": weights stored in float16 and multiplied in float32
    (half the bytes to read, about 1e-3 relative difference in the outputs; no int8 rounding of activations).
    The modules are the ones torch's `quantize_dynamic` makes (int8: `Int8Linear`, below), made faster: see
    `_convert_linears`.
    """
    import warnings

    with warnings.catch_warnings():  # torch marks its quantized tensors as deprecated; still the fastest CPU path
        warnings.simplefilter("ignore")
        return _convert_linears(model, _fp16_layer if kind == "fp16" else _int8_layer)


def full_range_int8_activations() -> bool:
    """Whether int8 Linear layers may quantize their activations to all 8 bits here: where fbgemm multiplies
    u8 x s8 with AVX512-VNNI, which accumulates in int32. Without it (AVX2), fbgemm's pairwise int16 sums can
    saturate, which is why torch's dynamic Linear always quantizes activations to 7 bits (`reduce_range=True`).

    On a VNNI machine 7 bits cost Whisper base words on the English clips that 8 bits keep, at the same speed
    (tests/test_acceptance_speech.py; docs/performance.md).
    """
    return torch.backends.quantized.engine in ("x86", "fbgemm") and cpu_supports("vnni")


@functools.cache
def _int8_linear_class() -> type[torch.nn.Module]:
    """torch's dynamic int8 Linear, quantizing activations to 8 bits where that is exact (see above)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class Int8Linear(DynamicLinear):
        reduce_range = not full_range_int8_activations()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                   reduce_range=self.reduce_range)
            return y.to(x.dtype)

        def _get_name(self) -> str:
            return "Int8Linear"

    return Int8Linear


def _fp16_layer(linear: torch.nn.Linear) -> torch.nn.Module:
    """torch's dynamic Linear with float16 weights, as `quantize_dynamic` with `float16_dynamic_qconfig` makes it."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    layer = DynamicLinear(1, 1, dtype=torch.float16)  # a 1x1 placeholder pack, not a full-size zero one
    layer.in_features, layer.out_features = linear.in_features, linear.out_features
    bias = None if linear.bias is None else linear.bias.detach().float()
    layer.set_weight_bias(linear.weight.detach().float(), bias)
    return layer


def _int8_layer(linear: torch.nn.Linear) -> torch.nn.Module:
    """`Int8Linear`, its weights int8 per output channel, as `quantize_dynamic` with `per_channel_dynamic_qconfig`
    makes it."""
    from torch.ao.nn.quantized.modules.utils import _quantize_weight
    from torch.ao.quantization import per_channel_dynamic_qconfig

    weight = linear.weight.detach()
    observer = per_channel_dynamic_qconfig.weight()
    observer(weight)
    layer = _int8_linear_class()(1, 1, dtype=torch.qint8)  # a 1x1 placeholder pack, not a full-size zero one
    layer.in_features, layer.out_features = linear.in_features, linear.out_features
    layer.set_weight_bias(_quantize_weight(weight.float(), observer), None if linear.bias is None else linear.bias)
    return layer


def _converted(module: torch.nn.Module) -> bool:
    """Whether `quantize_linear` converts the layer: exactly torch.nn.Linear, as quantize_dynamic matches;
    subclasses (attention's out_proj) keep their own forward."""
    return type(module) is torch.nn.Linear


def _convert_linears(model: torch.nn.Module, convert: Callable[[torch.nn.Linear], torch.nn.Module]) -> torch.nn.Module:
    """Every torch.nn.Linear replaced, in place, by `convert(layer)`: the modules `quantize_dynamic` makes, faster.

    Packing a weight for fbgemm is slow, and torch's conversion packs a zero weight of the full size before the real
    one. Here each weight is packed once, the layers on `torch.get_num_threads()` threads (packing releases the
    GIL), with the same outputs (`python -m benchmarks.linear_conversion`).
    """
    from concurrent.futures import ThreadPoolExecutor

    places = [(parent, name, child) for parent in model.modules() for name, child in parent._modules.items()
              if _converted(child)]  # _modules: named_children() names a layer used twice once
    linears = list({id(child): child for _, _, child in places}.values())  # a layer used twice is converted once
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        converted = dict(zip((id(linear) for linear in linears), pool.map(convert, linears), strict=True))
    for parent, name, child in places:
        setattr(parent, name, converted[id(child)])
    return model


def _off_the_file(model: torch.nn.Module) -> torch.nn.Module:
    """Copy every parameter and buffer out of the mapped checkpoint file, except the Linear weights, which the
    conversion to int8 or fp16 copies anyway: after it, nothing keeps the file mapped, and the fp32 weights are not
    left resident as its pages.

    transformers maps a safetensors checkpoint and hands out views of it. Reading the file into memory instead
    (`disable_mmap`) copied it twice, whole, and took longer, at the same resident size after
    (`python -m benchmarks.model_load`).
    """
    modules = list(model.modules())
    converted = {id(module.weight) for module in modules if _converted(module)}
    converted -= {id(param) for module in modules if not _converted(module)  # tied to another layer: copied
                  for param in module._parameters.values()}
    with torch.no_grad():
        for param in model.parameters():  # a tied parameter once
            if id(param) not in converted:
                param.data = param.data.clone()
        copies: dict[int, torch.Tensor] = {}  # a buffer shared by modules stays shared
        for module in model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    if id(buffer) not in copies:
                        copies[id(buffer)] = buffer.clone()
                    module._buffers[name] = copies[id(buffer)]
    return model


def measure_nbytes(value: Any) -> int:
    """Bytes held by a loaded value: its own `nbytes`, or a torch module's parameters and buffers."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    if isinstance(value, torch.nn.Module):
        seen: set[int] = set()
        total = 0
        for tensor in [*value.parameters(), *value.buffers()]:
            if tensor.data_ptr() in seen:  # tied weights count once
                continue
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
        return total
    return 0


def module_nbytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers (tied weights once), plus the packed weights of quantized Linear layers.

    A packed layer is counted from its shape, its weight at the stored width (fp16: 2 bytes, int8: 1) and an fp32
    bias taken as present: reading the packed weight back would unpack it, which takes seconds for a BLIP.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    total = measure_nbytes(model)
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            stored = 2 if module._packed_params.dtype == torch.float16 else 1
            total += module.in_features * module.out_features * stored + module.out_features * 4
    return total


def load_bundle(path: Path, *, device: str, dtype: torch.dtype, allowed: frozenset[str],
                quantize: str | None = None) -> ModelBundle:
    """Load the checkpoint in `path` onto `device` in `dtype`, in eval mode (Linear layers in `quantize`'s format,
    BLIP's attention fused: `mmdemo.models.attention`).

    Weights go straight to their device (accelerate's device map) rather than through a full CPU copy.
    Never runs code from the checkpoint (no trust_remote_code).
    """
    architecture = require_architecture(path, allowed)
    cls = _model_class(architecture)
    try:
        model = cls.from_pretrained(path, dtype=dtype, device_map=device_map_for(device))
        processor, tokenizer = _load_processor(path, architecture)
        _check_vocabulary(tokenizer)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
        raise ModelUnavailableError("error.model.load_failed", model=model_name(path), error=type(e).__name__) from e
    model.eval()
    if quantize:
        model = quantize_linear(_off_the_file(model), quantize)
    from mmdemo.models.attention import fuse_attention  # imports BLIP's model code: not at start-up

    fuse_attention(model)
    return ModelBundle(model=model, processor=processor, architecture=architecture, tokenizer=tokenizer,
                       nbytes=module_nbytes(model))
