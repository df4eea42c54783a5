"""Device and precision choice, the memory budget that follows from them, and the GPU-decorator shim.

On a Hugging Face ZeroGPU Space (`SPACES_ZERO_GPU` set and the `spaces` package importable) `gpu_function`
wraps a function with `spaces.GPU`, so a GPU is attached only while it runs; everywhere else it returns the
function unchanged. ZeroGPU patches torch's CUDA calls when `spaces` is imported and refuses a process that
initialized CUDA before: this module imports it before torch, and `app.py` imports this module before anything but
`mmdemo.collector` (standard library only).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import math
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

log = logging.getLogger(__name__)


def on_zero_gpu(environ: dict[str, str] | None = None) -> bool:
    """Whether this process runs on ZeroGPU hardware (the variable the `spaces` package reads too)."""
    value = (os.environ if environ is None else environ).get("SPACES_ZERO_GPU", "")
    return value.strip().lower() in {"1", "t", "true"}


def zero_gpu_spaces() -> ModuleType | None:
    """The `spaces` package when running on ZeroGPU, else None (no-op everywhere else)."""
    if not on_zero_gpu():
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing: running without ZeroGPU")
        return None


_spaces = zero_gpu_spaces()  # before torch: see the module docstring
if _spaces is not None and hasattr(_spaces, "disable_gradio_auto_wrap"):
    # Only the predict functions we wrap should hold a GPU, not every Gradio event (the Models panel, uploads).
    _spaces.disable_gradio_auto_wrap()

import psutil  # noqa: E402
import torch  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Share of what is free when the app starts that the model cache may fill by default.
GPU_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.5
# GPU memory of one default-size ZeroGPU workload, rounded down over the GPUs ZeroGPU has used
# (A100 40 GB, H200 slice 70 GB, RTX PRO 6000 "large" 48 GB).
ZERO_GPU_MEMORY = 40 * 10**9

F = TypeVar("F", bound=Callable[..., Any])


def gpu_function(fn: F, duration: Callable[..., float]) -> F:
    """`fn` run with a ZeroGPU GPU attached for at most `duration(*args, **kwargs)` seconds; elsewhere `fn` itself.

    On ZeroGPU the call runs in a forked worker process: arguments and the return value cross it by pickle,
    so pass small plain values (no models, no CUDA tensors) and let `fn` find its models.
    """
    spaces = zero_gpu_spaces()
    if spaces is None:
        return fn

    def seconds(*args: Any, **kwargs: Any) -> int:
        # ZeroGPU reads whole seconds (a timedelta's .seconds): round up, never 0.
        return max(1, math.ceil(duration(*args, **kwargs)))

    log.info("ZeroGPU: %s runs on a GPU attached per call", getattr(fn, "__qualname__", fn))
    return spaces.GPU(duration=seconds)(fn)


def resolve_device(preference: str = "auto") -> str:
    """Pick cuda, then mps, then cpu for 'auto'; check an explicit choice is usable.

    On ZeroGPU `spaces` makes torch report one CUDA device in this process without touching the driver.
    """
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
        if on_zero_gpu():  # every ZeroGPU GPU supports bf16; asking the device would mean CUDA in this process
            return torch.bfloat16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def cpu_supports(*features: str) -> bool:
    """Whether torch reports any of these CPU features ("avx512_bf16", "vnni", "amx_tile"); False where this torch
    has no such probe (its `torch.cpu._is_<feature>_supported` functions are private)."""
    return any(bool(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)()) for name in features)


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16, or AMX tiles): there bf16 matrix products run
    at about twice the fp32 rate; elsewhere torch emulates them, slower than fp32."""
    return cpu_supports("avx512_bf16", "amx_tile")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_memory_budget(device: str) -> int:
    """A share of the free GPU memory on a GPU, or of the available RAM otherwise.

    On ZeroGPU this process has no GPU: weights placed on "cuda" wait in RAM until a GPU function runs, so
    the budget is a share of the RAM, capped by a share of one ZeroGPU workload's GPU memory.
    """
    ram_share = int(psutil.virtual_memory().available * CPU_BUDGET_SHARE)
    if device.startswith("cuda") and on_zero_gpu():
        return min(ram_share, int(ZERO_GPU_MEMORY * GPU_BUDGET_SHARE))
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, _total = torch.cuda.mem_get_info(index)
        if torch.cuda.device_count() > 1 and ":" not in device:
            free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return int(free * GPU_BUDGET_SHARE)
    return ram_share


def device_map_for(device: str) -> str | None:
    """Where from_pretrained should put weights: straight onto the device, spread over GPUs if several.

    On ZeroGPU "cuda" is what its documentation asks for: the weights stay in RAM until a GPU function runs.
    """
    if device == "cuda" and torch.cuda.device_count() > 1:
        return "auto"
    if device == "cpu":
        return None
    return device


def empty_device_cache() -> None:
    """Hand freed blocks back to the driver so eviction shows up in nvidia-smi too."""
    if on_zero_gpu():  # this process holds no GPU memory; the workers' memory goes when they end
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


def trim_host_heap() -> None:
    """Give freed heap pages back to the OS (glibc's malloc_trim), so an evicted model leaves the resident size.

    A quantized model (its weights copied off the file and converted) is freed into glibc's arenas, which keep it:
    measured, six load-and-evict cycles of BLIP captioning with fp16 weights left the process 800 MB larger without
    this.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
