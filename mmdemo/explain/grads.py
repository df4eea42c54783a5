"""What the explain methods share: a scope with gradients on, a layer's input captured from the plain forward pass,
and maps as small 0-1 float grids."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

NO_MAPS = "Maps are not available for {architecture}: its attention weights cannot be read here"


@contextmanager
def gradients_on() -> Iterator[None]:
    """Autograd on inside a task's predict (which the runtime runs under torch.inference_mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def plain(tensor: torch.Tensor) -> torch.Tensor:
    """A copy usable by autograd: tensors made under inference mode cannot be saved for backward."""
    with torch.inference_mode(False):
        return tensor.detach().clone()


class LayerInput:
    """An input of `module` (its first argument, else the keyword `name`) in the first forward pass run by this
    thread (another thread's request on the same shared model is not recorded), kept as `value` after the block."""

    def __init__(self, module: torch.nn.Module, name: str = "hidden_states") -> None:
        self.module = module
        self.name = name
        self.value: torch.Tensor | None = None
        self._thread = threading.get_ident()

    def _record(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if threading.get_ident() == self._thread and self.value is None:
            self.value = kwargs[self.name] if self.name in kwargs or not args else args[0]

    @contextmanager
    def during(self) -> Iterator[LayerInput]:
        handle = self.module.register_forward_pre_hook(self._record, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()


def unit_grid(values: torch.Tensor, rows: int, cols: int) -> list[list[float]]:
    """A relevance vector (rows * cols patches, row-major) as a grid scaled to 0-1 by its maximum (all 0 if none)."""
    grid = values.detach().double().clamp(min=0).reshape(rows, cols).cpu().numpy()
    top = float(grid.max()) if grid.size else 0.0
    grid = grid / top if top > 0 else np.zeros_like(grid)
    return np.round(grid, 4).tolist()


def explain_flag(value: Any) -> bool:
    """The `explain` input: a checkbox's bool, or an API client's true/false, 1/0, "yes"/"no" (blank: off)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    from mmdemo.errors import InputError

    raise InputError("error.explain.flag", value=value)


class _PackedLinearGrad(torch.autograd.Function):
    """A packed (int8 or fp16-weight) Linear layer that gives its input's gradient: torch's dynamic quantized layers
    have no autograd kernel. The forward pass is the layer's own; the backward unpacks the weight for the one
    product it needs (grad @ W) and keeps nothing."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:  # type: ignore[override]
        ctx.layer = layer
        with torch.no_grad():
            return layer._packed_forward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        transposed = getattr(ctx.layer, "_transposed_pack", None)
        if transposed is not None:  # keep_transposed_weights: grad @ W as one packed product, nothing unpacked
            return torch.ops.quantized.linear_dynamic_fp16(grad.float().contiguous(), transposed).to(grad.dtype), None
        weight, _ = ctx.layer._packed_params._weight_bias()
        if weight.is_quantized:
            weight = weight.dequantize()
        return grad @ weight.to(grad.dtype), None


_differentiable_classes: dict[type, type] = {}
_differentiable_lock = threading.Lock()


def _differentiable_class(cls: type) -> type:
    with _differentiable_lock:
        if cls not in _differentiable_classes:
            def forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
                if torch.is_grad_enabled() and x.requires_grad:
                    return _PackedLinearGrad.apply(x, self)
                return cls.forward(self, x)

            def packed_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
                return cls.forward(self, x)

            _differentiable_classes[cls] = type(cls.__name__, (cls,), {"forward": forward,
                                                                     "_packed_forward": packed_forward})
        return _differentiable_classes[cls]


def differentiable(model: torch.nn.Module) -> torch.nn.Module:
    """Let gradients pass through `model`'s packed Linear layers (the CPU's fp16-weight and int8 formats), in place
    and once: a layer's class becomes a subclass whose forward is the same computation (the plain path is untouched;
    a request on another thread meanwhile gets the same numbers) and which, with autograd on, also differentiates."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for module in model.modules():
        if isinstance(module, DynamicLinear) and type(module) not in _differentiable_classes.values():
            module.__class__ = _differentiable_class(type(module))
    return model


def keep_transposed_weights(model: torch.nn.Module) -> int:
    """`differentiable(model)`, and each packed Linear layer given a second fp16 pack, of its weight transposed, for
    its backward: grad @ W then costs what the forward's product costs. Without it each backward unpacks the weight,
    and fbgemm's fp16 unpack is slow (about 5 ns a weight on the 2-core AVX2 CPU: 0.4 s for RoBERTa base, 12x its
    forward pass). The packs stay with the model (2 bytes a weight: 170 MB for RoBERTa base, not in the size the
    model cache measured at load) and are built once (1.5-2 s); an int8 layer's pack holds its dequantized weight.
    Returns the bytes added by this call (0 when already built).
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    differentiable(model)
    added = 0
    with _differentiable_lock:
        for module in model.modules():
            if isinstance(module, DynamicLinear) and getattr(module, "_transposed_pack", None) is None:
                weight, _ = module._packed_params._weight_bias()
                if weight.is_quantized:
                    weight = weight.dequantize()
                module._transposed_pack = torch.ops.quantized.linear_prepack_fp16(weight.float().t().contiguous(),
                                                                                  None)
                added += 2 * weight.numel()
    return added


class AttentionRecorder:
    """The attention probabilities (a module's second output) of every forward pass this thread runs through
    `module` inside the block, autograd graph included: what the explain methods take gradients on."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.probs: list[torch.Tensor] = []
        self._thread = threading.get_ident()

    def _record(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if threading.get_ident() == self._thread:
            self.probs.append(output[1])

    @contextmanager
    def during(self) -> Iterator[AttentionRecorder]:
        handle = self.module.register_forward_hook(self._record)
        try:
            yield self
        finally:
            handle.remove()
