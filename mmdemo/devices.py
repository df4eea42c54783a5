"""Device and precision choice, and the memory budget that follows from them."""

from __future__ import annotations

import logging

import psutil
import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Share of what is free when the app starts that the model cache may fill by default.
GPU_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.5


def resolve_device(preference: str = "auto") -> str:
    """Pick cuda, then mps, then cpu for 'auto'; check an explicit choice is usable."""
    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"Device {preference!r} was asked for but CUDA is not available; use auto or cpu")
        return preference
    if preference == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("Device 'mps' was asked for but MPS is not available; use auto or cpu")
        return preference
    if preference == "cpu":
        return preference
    raise ValueError(f"Unknown device {preference!r}: choose auto, cuda, cuda:N, mps or cpu")


def resolve_dtype(device: str, preference: str = "auto") -> torch.dtype:
    """fp32 on CPU; bf16 on GPUs that support it, else fp16; or the explicit choice."""
    preference = (preference or "auto").strip().lower()
    if preference != "auto":
        try:
            return DTYPES[preference]
        except KeyError as e:
            raise ValueError(f"Unknown dtype {preference!r}: choose auto, {', '.join(DTYPES)}") from e
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_memory_budget(device: str) -> int:
    """A share of the free GPU memory on a GPU, or of the available RAM otherwise."""
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, _total = torch.cuda.mem_get_info(index)
        if torch.cuda.device_count() > 1 and ":" not in device:
            free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return int(free * GPU_BUDGET_SHARE)
    return int(psutil.virtual_memory().available * CPU_BUDGET_SHARE)


def device_map_for(device: str) -> str | None:
    """Where from_pretrained should put weights: straight onto the device, spread over GPUs if several."""
    if device == "cuda" and torch.cuda.device_count() > 1:
        return "auto"
    if device == "cpu":
        return None
    return device


def empty_device_cache() -> None:
    """Hand freed blocks back to the driver so eviction shows up in nvidia-smi too."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()
