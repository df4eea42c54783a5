"""The runtime: settings, device, model cache and locator, and the one way a task request runs.

validate -> pin the models the task needs in the cache (loading on a miss) -> predict under
torch.inference_mode() -> format, with provenance (models, device, dtype, milliseconds) attached.

Only predict needs the GPU: each task's `predict_batch` goes through `devices.gpu_function`, which on a ZeroGPU
Space runs it in a worker process with a GPU attached for the task's `gpu_seconds` of the inputs, and elsewhere
calls it directly. Validation, loading and formatting stay in this process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from mmdemo import registry
from mmdemo.batching import Batcher
from mmdemo.cache import ModelCache, ModelKey
from mmdemo.config import Settings
from mmdemo.devices import (
    cpu_computes_bf16,
    default_memory_budget,
    dtype_name,
    gpu_function,
    resolve_device,
    resolve_dtype,
)
from mmdemo.errors import BusyError, InputError, ModelTooLargeError, ModelUnavailableError
from mmdemo.loading import (
    QUANTIZATIONS,
    ModelBundle,
    estimate_nbytes,
    import_model_code,
    load_bundle,
    require_architecture,
)
from mmdemo.model_threads import run_on_own_thread
from mmdemo.sources import HubProbe, ModelLocator
from mmdemo.tasks.base import GPU_SETUP_SECONDS, ModelSpec, Task

T = TypeVar("T")
log = logging.getLogger(__name__)

OnLoad = Callable[[str], None]
QUANTIZE_MODES = ("auto", *QUANTIZATIONS, "bf16", "none")
# MMDEMO_QUANTIZE=auto on CPU: each architecture's Linear format where it was measured to save time at the same
# output (`python -m benchmarks.linear_formats`, real-size models on 2 CPU cores), fp32 elsewhere.
CPU_DEFAULT_QUANTIZATION = {
    # int8: 1.4-1.6x, word error rate unchanged on the offline pack's clips (acceptance tests).
    "WhisperForConditionalGeneration": "int8",
    # fp16 weights, fp32 arithmetic: the same outputs to about 1e-3, while reading half the bytes. Short texts and
    # token-by-token decoding are bound by memory bandwidth here: captioning 1.91x, BLIP VQA 1.71x, ViLT 1.15x,
    # RoBERTa 1.98x. DistilBERT is the same kind of encoder as RoBERTa (not in the benchmark).
    # CLIP and SigLIP stay fp32: one measurement found them slower with fp16 weights (0.88x, 0.92x), the benchmark
    # faster (1.44x, 1.08x); not settled.
    "BlipForConditionalGeneration": "fp16",
    "BlipForQuestionAnswering": "fp16",
    "ViltForQuestionAnswering": "fp16",
    "RobertaForSequenceClassification": "fp16",
    "DistilBertForSequenceClassification": "fp16",
}
# ... and where the CPU multiplies bf16 natively (devices.cpu_computes_bf16), the architectures that run faster as
# whole bf16 models, the precision they get on a GPU: `python -m benchmarks.cpu_bf16` on an AVX512-BF16 EPYC, the
# app's own path, ViLT 1.75x against fp16 weights, CLIP 1.85x and SigLIP 1.88x against fp32 (their embeddings agree
# with fp32's to a cosine of 0.9999). BLIP (0.86-0.91x: its fused attention and fp16 weights were faster), RoBERTa
# (0.99x) and Whisper (int8 1.5-1.75x faster) keep their format.
CPU_BF16_ARCHITECTURES = frozenset({"ViltForQuestionAnswering", "CLIPModel", "SiglipModel"})
# How the cache report and each result's provenance name a format.
_DTYPE_LABEL = {"int8": "int8", "fp16": "fp16-weights", "bf16": "bfloat16"}
# Expected in-memory size against fp32 for each format, until the loaded model is measured.
_SIZE_FACTOR = {"int8": 0.5, "fp16": 0.6, "bf16": 0.5}
# The longest a load waits for the background import of model code (a few seconds on 2 cores) before it goes ahead.
IMPORT_WAIT_SECONDS = 120
# A task's predict_batch as the runtime calls it: the models by role as cache keys (small and picklable, unlike the
# models themselves: on ZeroGPU the call crosses into another process) and clean inputs sharing a batch key.
PredictBatch = Callable[[Mapping[str, ModelKey], Sequence[Any]], "list[Any] | _Refused"]


@dataclass(frozen=True)
class ModelChoice:
    """A curated model as the UI shows it: whether it can load here without network."""

    spec: ModelSpec
    available_offline: bool


@dataclass(frozen=True)
class Prediction:
    """A task's raw output for one request, and where it ran."""

    output: Any
    batch_size: int
    device: str
    dtype: str
    ms: float  # predict time, model loading excluded


@dataclass(frozen=True)
class _Refused:
    """A visitor-facing error from predict, returned instead of raised: ZeroGPU turns an exception raised in its
    worker into a generic "ZeroGPU worker error", and this one's message is meant for the visitor."""

    error: Exception


class Runtime:
    """Everything a request needs beyond its inputs; one per process, shared by all tabs."""

    def __init__(self, settings: Settings, *, cache: ModelCache | None = None,
                 locator: ModelLocator | None = None) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(self.device, settings.dtype)
        budget = settings.memory_budget or default_memory_budget(self.device)
        self.cache = cache or ModelCache(budget)
        self.locator = locator or ModelLocator(settings.model_dir, HubProbe(settings.hub_timeout))
        if settings.quantize not in QUANTIZE_MODES:
            raise ValueError(f"Unknown quantize setting {settings.quantize!r}: choose {', '.join(QUANTIZE_MODES)}")
        self._architectures: dict[tuple[str, str | None], str] = {}  # learnt when a model is first located
        self.batcher = Batcher(settings.batch_window_ms / 1000, settings.max_batch)
        self._in_flight: Counter[str] = Counter()  # requests per task between validation and their result
        self._in_flight_lock = threading.Lock()
        # Every bundle handed out by the cache and still alive, for predict calls to find by key.
        self._live: weakref.WeakValueDictionary[ModelKey, ModelBundle] = weakref.WeakValueDictionary()
        self._worker_bundles: dict[ModelKey, ModelBundle] = {}  # loaded inside a ZeroGPU worker, see _bundle_for
        self._pid = os.getpid()
        self._code_imported = threading.Event()  # cleared while model code imports in the background
        self._code_imported.set()
        # One GPU-wrapped predict per task, made before the app is served (ZeroGPU registers them at launch).
        self._predicts: dict[str, PredictBatch] = {}
        self._predicts_lock = threading.Lock()
        for name in registry.names():
            self.predict_function(registry.get(name))

    def key_for(self, spec: ModelSpec) -> ModelKey:
        architecture = self._architectures.get((spec.id, spec.revision), "")
        quantization = self._quantization(architecture)
        dtype = _DTYPE_LABEL[quantization] if quantization else dtype_name(self.dtype)
        return ModelKey(spec.id, spec.revision, self.device, dtype)

    def _quantization(self, architecture: str) -> str | None:
        """The CPU format of a model of `architecture`: its Linear layers' ("int8", "fp16"), the whole model in
        "bf16", or None (the runtime's dtype). Only on CPU in fp32 (an explicit MMDEMO_DTYPE wins); auto picks
        the measured wins."""
        if self.device != "cpu" or self.settings.quantize == "none" or self.dtype != torch.float32:
            return None
        if self.settings.quantize == "auto":
            if architecture in CPU_BF16_ARCHITECTURES and cpu_computes_bf16():
                return "bf16"
            return CPU_DEFAULT_QUANTIZATION.get(architecture)
        return self.settings.quantize

    def _dtype(self, quantization: str | None) -> torch.dtype:
        return torch.bfloat16 if quantization == "bf16" else self.dtype

    @contextmanager
    def bundles(self, task: Task, specs: Mapping[str, ModelSpec],
                on_load: OnLoad | None = None) -> Iterator[dict[str, ModelBundle]]:
        """Pin the bundles for `specs` (role -> spec) for the duration of the block."""
        located = {role: self._locate(task, spec) for role, spec in specs.items()}
        needed = sum(estimate for _, _, estimate in located.values())
        if len(specs) > 1 and needed > self.cache.budget_bytes:
            # Pinned one by one, the last load would wait for this request's own models: say so at once.
            raise ModelTooLargeError(
                f"This request needs {len(specs)} models ({needed / 1e9:.2f} GB together) but the memory budget is "
                f"{self.cache.budget_bytes / 1e9:.2f} GB: raise MMDEMO_MEMORY_BUDGET or give fewer inputs"
            )
        with ExitStack() as stack:
            loaded = {}
            for role, spec in specs.items():
                loaded[role] = stack.enter_context(self._use(task, spec, on_load, located[role]))
            yield loaded

    def _locate(self, task: Task, spec: ModelSpec) -> tuple[Path, str, int]:
        """The checkpoint's directory (downloading it if needed), architecture, and expected bytes in memory."""
        path = self.locator.locate(spec.id, spec.revision)  # may download: outside the cache's lock
        architecture = require_architecture(path, task.architectures)  # also on a cache hit from another task
        self._architectures[(spec.id, spec.revision)] = architecture
        # Quantized Linear layers shrink a model; the exact size is measured once loaded.
        estimate = int(estimate_nbytes(path, self.dtype) * _SIZE_FACTOR.get(self._quantization(architecture), 1))
        return path, architecture, estimate

    @contextmanager
    def _use(self, task: Task, spec: ModelSpec, on_load: OnLoad | None,
             located: tuple[Path, str, int] | None = None) -> Iterator[ModelBundle]:
        path, architecture, estimate = located or self._locate(task, spec)

        def loader() -> ModelBundle:
            return self.on_model_thread(self._load, task, path, architecture)

        notify = (lambda key: on_load(key.model_id)) if on_load else None
        key = self.key_for(spec)
        with self.cache.use(key, loader, estimate=estimate, on_load=notify) as bundle:
            self._live[key] = bundle
            yield bundle

    def import_model_code_in_background(self, then: Callable[[], None] | None = None) -> None:
        """Import the model code of every registered task in a daemon thread; loads wait until it is done.

        Call it once the app serves (not before: it would hold the GIL while the server starts). A visitor's first
        click then finds transformers imported; one that comes sooner waits for the import it would have done
        itself, and no two threads import the same modules at once. `then` runs in that thread afterwards, while
        those loads still wait: it never sees a model half loaded (the collector's freeze must not catch one).
        """
        self._code_imported.clear()

        def run() -> None:
            started = time.perf_counter()
            try:
                import_model_code(sorted(set().union(*(registry.get(n).architectures for n in registry.names()))))
                log.info("Imported the model code of every tab in %.1f s", time.perf_counter() - started)
            except Exception:  # a broken import shows again, with its cause, when a model of it loads
                log.exception("Importing model code ahead of the first request failed")
            try:
                if then is not None:
                    then()
            finally:
                self._code_imported.set()

        threading.Thread(target=run, name="mmdemo-import-model-code", daemon=True).start()

    def _load(self, task: Task, path: Path, architecture: str) -> ModelBundle:
        self._code_imported.wait(IMPORT_WAIT_SECONDS)
        quantization = self._quantization(architecture)
        return load_bundle(path, device=self.device, dtype=self._dtype(quantization), allowed=task.architectures,
                           quantize=quantization if quantization in QUANTIZATIONS else None)

    def load(self, task: Task, spec: ModelSpec) -> ModelBundle:
        """Load `spec` for `task` as this runtime would (device, dtype, int8), outside the cache.

        For a backend that keeps its own models (a Ray Serve replica); requests here go through the cache.
        """
        path, architecture, _ = self._locate(task, spec)
        return self.on_model_thread(self._load, task, path, architecture)

    def predict_function(self, task: Task) -> PredictBatch:
        """The task's predict_batch over pinned models, wrapped once with the GPU shim (a no-op off ZeroGPU).

        The bundles must be pinned (`bundles`) around the call; it returns the outputs, or `_Refused`.
        """
        with self._predicts_lock:
            wrapped = self._predicts.get(task.name)
            if wrapped is None:
                def predict(keys: Mapping[str, ModelKey], batch: Sequence[Any]) -> list[Any] | _Refused:
                    bundles = {role: self._bundle_for(task, key) for role, key in keys.items()}
                    try:
                        with torch.inference_mode():
                            return task.predict_batch(bundles, batch)
                    except (InputError, ModelUnavailableError, BusyError) as e:
                        return _Refused(e)

                def seconds(keys: Mapping[str, ModelKey], batch: Sequence[Any]) -> float:
                    # One call sets up once, then does each request's own work.
                    return sum(task.gpu_seconds(inputs) for inputs in batch) - GPU_SETUP_SECONDS * (len(batch) - 1)

                predict.__name__ = predict.__qualname__ = f"predict_{task.name}"
                wrapped = gpu_function(predict, duration=seconds)
                self._predicts[task.name] = wrapped
            return wrapped

    def on_model_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` (model work: a load, a predict) on a thread of its own on CPU, so that no thread serving
        requests keeps an OpenMP team (mmdemo/model_threads.py); in the caller's thread elsewhere (a GPU's work is
        not OpenMP's)."""
        return run_on_own_thread(fn, *args) if self.device == "cpu" else fn(*args)

    def _bundle_for(self, task: Task, key: ModelKey) -> ModelBundle:
        """The pinned bundle for `key`; in a ZeroGPU worker forked before it was loaded, a copy loaded there."""
        bundle = self._live.get(key)
        if bundle is None:
            bundle = self._worker_bundles.get(key)
        if bundle is not None:
            return bundle
        if os.getpid() == self._pid:
            raise RuntimeError(f"{key} is not pinned: a task's predict runs only inside Runtime.run")
        # ZeroGPU reuses a worker process for later calls, and a worker has only the models that were loaded
        # when it was forked. Load this one onto the worker's GPU; keep at most a budget's worth of such copies.
        if sum(b.nbytes for b in self._worker_bundles.values()) > self.cache.budget_bytes:
            self._worker_bundles.clear()
        log.info("Loading %s inside the GPU worker: it was loaded after the worker started", key)
        path = self.locator.locate(key.model_id, key.revision)
        bundle = load_bundle(path, device=self.device, dtype=self.dtype, allowed=task.architectures)
        self._worker_bundles[key] = bundle
        return bundle

    def run(self, task_name: str, raw: Mapping[str, Any], *, on_load: OnLoad | None = None) -> dict[str, Any]:
        """Validate, predict and format one request for the task called `task_name`.

        Args:
            task_name: a registered task.
            raw: the raw values from the UI or API, by the names the task's validate reads.
            on_load: told the model id before a model loads (cache miss), for a progress message.
        Returns:
            The task's formatted result plus "provenance": models, device, dtype and milliseconds.
        Raises:
            InputError, ModelUnavailableError, BusyError: with a message meant for the visitor.
        """
        task = registry.get(task_name)
        with self._counted(task.name):
            inputs = task.validate(raw, self.settings)
            specs = task.models_needed(inputs)
            prediction = self.predict(task, specs, inputs, on_load)
        result = task.format(prediction.output, inputs)
        result["provenance"] = {
            "models": {role: spec.id for role, spec in specs.items()},
            "revisions": {role: spec.revision for role, spec in specs.items()},
            "device": prediction.device,
            "dtype": prediction.dtype,
            "ms": round(prediction.ms, 1),
            "batch_size": prediction.batch_size,
        }
        return result

    @property
    def max_batch(self) -> int:
        """The most requests one batch takes: the UI admits that many at once to a tab that batches."""
        return self.settings.max_batch

    @contextmanager
    def _counted(self, task_name: str) -> Iterator[None]:
        with self._in_flight_lock:
            self._in_flight[task_name] += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight[task_name] -= 1

    def _others_coming(self, task_name: str, gathered: int) -> bool:
        """Whether more requests for the task are under way than a batch has gathered: worth waiting for."""
        return self._in_flight[task_name] > gathered

    def predict(self, task: Task, specs: Mapping[str, ModelSpec], inputs: Any,
                on_load: OnLoad | None = None) -> Prediction:
        """Where a request's predict runs: here, over the shared cache, batched with requests that arrive
        together. A remote backend (mmdemo.serving) overrides this and leaves validate and format here."""
        predict_batch = self.predict_function(task)
        with self.bundles(task, specs, on_load) as bundles:  # pinned until predict returns
            keys = {role: self.key_for(spec) for role, spec in specs.items()}
            started = time.perf_counter()
            inputs = task.preprocess(bundles, inputs)

            def run_batch(batch: list[Any]) -> list[Any]:
                outputs = self.on_model_thread(predict_batch, keys, batch)
                if isinstance(outputs, _Refused):
                    raise outputs.error
                return outputs

            batch_key = task.batch_key(inputs)
            if batch_key is None:
                output, batch_size = run_batch([inputs])[0], 1
            else:  # requests that arrive together for the same models share one forward pass
                batched = self.batcher.submit((task.name, tuple(sorted(keys.items())), batch_key), inputs, run_batch,
                                              others_coming=lambda gathered: self._others_coming(task.name, gathered))
                output, batch_size = batched.result, batched.batch_size
            milliseconds = (time.perf_counter() - started) * 1000
        dtype = "+".join(sorted({key.dtype for key in keys.values()}))  # one spelling, as the Ray backend's
        return Prediction(output, batch_size, self.device, dtype, milliseconds)

    def preload(self, task_name: str, model_id: str | None = None, on_load: OnLoad | None = None) -> ModelKey:
        """Load a task's model (default: its default model) into the cache without running it."""
        task = registry.get(task_name)
        spec = task.model_spec(model_id, allow_custom=self.settings.allow_custom_models)
        with self._use(task, spec, on_load):
            pass
        return self.key_for(spec)

    def model_choices(self, task_name: str) -> list[ModelChoice]:
        """The task's curated models, each marked by whether it can load without network."""
        task = registry.get(task_name)
        return [ModelChoice(spec, self.locator.is_local(spec.id)) for spec in task.models]

    def hub_reachable(self) -> bool:
        return self.locator.probe.reachable()

    def cache_report(self) -> dict[str, Any]:
        """The cache's statistics as plain JSON, warmest entry first."""
        stats = self.cache.stats()
        return {
            "device": self.device,
            "dtype": dtype_name(self.dtype),
            "budget_bytes": stats.budget_bytes,
            "used_bytes": stats.used_bytes,
            "hits": stats.hits,
            "misses": stats.misses,
            "evictions": stats.evictions,
            "entries": [
                {
                    "model": e.key.model_id,
                    "revision": e.key.revision,
                    "device": e.key.device,
                    "dtype": e.key.dtype,
                    "bytes": e.nbytes,
                    "load_seconds": round(e.load_seconds, 3),
                    "hits": e.hits,
                    "last_used": e.last_used,
                    "in_use": e.in_use,
                }
                for e in reversed(stats.entries)
            ],
        }

    def unload(self, model_id: str) -> int:
        """Evict every resident entry of `model_id`; returns how many were evicted."""
        keys = [e.key for e in self.cache.stats().entries if e.key.model_id == model_id]
        return sum(self.cache.unload(key) for key in keys)


BACKENDS = ("local", "ray")


def create_runtime(settings: Settings) -> Runtime:
    """The runtime for `settings.backend`: models in this process (local) or on a Ray Serve cluster (ray)."""
    if settings.backend == "ray":
        from mmdemo.serving.frontend import RayRuntime  # imports ray: only when asked for

        return RayRuntime(settings)
    if settings.backend != "local":
        raise ValueError(f"Unknown backend {settings.backend!r}: choose {', '.join(BACKENDS)} (MMDEMO_BACKEND)")
    return Runtime(settings)
