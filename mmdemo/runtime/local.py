"""`LocalPredictor`: the models in this process, shared by all tabs through one cache.

A request pins the models it needs in the cache (loading on a miss, least recently used evicted under the memory
budget), preprocesses in its own thread, and joins requests for the same models in one `predict_batch` where its
task batches. On CPU each model call runs on a thread of its own (`model_threads`).

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
from typing import Any, TypeVar

import torch

from mmdemo import registry
from mmdemo.errors import ModelTooLargeError, VisitorError
from mmdemo.models.devices import default_memory_budget, dtype_name, gpu_function
from mmdemo.models.loader import Located, ModelLoader
from mmdemo.models.loading import ModelBundle, ModelKey, load_bundle
from mmdemo.runtime.batching import Batcher
from mmdemo.runtime.cache import ModelCache
from mmdemo.runtime.core import OnLoad, Prediction
from mmdemo.runtime.model_threads import run_on_own_thread
from mmdemo.tasks.base import GPU_SETUP_SECONDS, ModelSpec, Task

T = TypeVar("T")
log = logging.getLogger(__name__)

# A task's predict_batch as the predictor calls it: the models by role as cache keys (small and picklable, unlike
# the models themselves: on ZeroGPU the call crosses into another process) and clean inputs sharing a batch key.
PredictBatch = Callable[[Mapping[str, ModelKey], Sequence[Any]], "list[Any] | _Refused"]


@dataclass(frozen=True)
class _Refused:
    """A visitor-facing error from predict, returned instead of raised: ZeroGPU turns an exception raised in its
    worker into a generic "ZeroGPU worker error", and this one's message is meant for the visitor."""

    error: Exception


class LocalPredictor:
    """Runs the tasks' models in this process over the shared cache.

    Args:
        loader: locates and loads checkpoints (device, dtype and CPU formats come from it).
        cache: the model cache (default: a new one with the settings' budget, else the device's default).
    """

    def __init__(self, loader: ModelLoader, *, cache: ModelCache | None = None) -> None:
        settings = loader.settings
        self.loader = loader
        self.device = loader.device
        self.dtype = loader.dtype
        self.cache = cache or ModelCache(settings.memory_budget or default_memory_budget(self.device))
        self.batcher = Batcher(settings.batch_window_ms / 1000, settings.max_batch)
        self.max_batch = settings.max_batch
        self._in_flight: Counter[str] = Counter()  # requests per task between validation and their result
        self._in_flight_lock = threading.Lock()
        # Every bundle handed out by the cache and still alive, for predict calls to find by key.
        self._live: weakref.WeakValueDictionary[ModelKey, ModelBundle] = weakref.WeakValueDictionary()
        self._worker_bundles: dict[ModelKey, ModelBundle] = {}  # loaded inside a ZeroGPU worker, see _bundle_for
        self._pid = os.getpid()
        # One GPU-wrapped predict per task, made before the app is served (ZeroGPU registers them at launch).
        self._predicts: dict[str, PredictBatch] = {}
        self._predicts_lock = threading.Lock()
        for name in registry.names():
            self.predict_function(registry.get(name))

    def key_for(self, spec: ModelSpec) -> ModelKey:
        return self.loader.key_for(spec)

    @contextmanager
    def bundles(self, task: Task, specs: Mapping[str, ModelSpec],
                on_load: OnLoad | None = None) -> Iterator[dict[str, ModelBundle]]:
        """Pin the bundles for `specs` (role -> spec) for the duration of the block."""
        located = {role: self.loader.locate(task, spec) for role, spec in specs.items()}  # may download
        needed = sum(place.estimate for place in located.values())
        if len(specs) > 1 and needed > self.cache.budget_bytes:
            # Pinned one by one, the last load would wait for this request's own models: say so at once.
            raise ModelTooLargeError("error.memory.request_too_large", count=len(specs), size_gb=needed / 1e9,
                                     budget_gb=self.cache.budget_bytes / 1e9)
        with ExitStack() as stack:
            yield {role: stack.enter_context(self._use(task, spec, located[role], on_load))
                   for role, spec in specs.items()}

    @contextmanager
    def _use(self, task: Task, spec: ModelSpec, located: Located, on_load: OnLoad | None) -> Iterator[ModelBundle]:
        def load() -> ModelBundle:
            return self.on_model_thread(self.loader.load, task, located)

        notify = (lambda key: on_load(key.model_id)) if on_load else None
        key = self.key_for(spec)
        with self.cache.use(key, load, estimate=located.estimate, on_load=notify) as bundle:
            self._live[key] = bundle
            yield bundle

    def import_model_code_in_background(self, then: Callable[[], None] | None = None) -> None:
        """Import the model code of every registered task (see `ModelLoader.import_model_code_in_background`)."""
        architectures = set().union(*(registry.get(name).architectures for name in registry.names()))
        self.loader.import_model_code_in_background(architectures, then)

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
                    except VisitorError as e:
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
        requests keeps an OpenMP team (`runtime.model_threads`); in the caller's thread elsewhere (a GPU's work is
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
        path = self.loader.locator.locate(key.model_id, key.revision)
        bundle = load_bundle(path, device=self.device, dtype=self.dtype, allowed=task.architectures)
        self._worker_bundles[key] = bundle
        return bundle

    @contextmanager
    def incoming(self, task: Task) -> Iterator[None]:
        with self._in_flight_lock:
            self._in_flight[task.name] += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight[task.name] -= 1

    def _others_coming(self, task_name: str, gathered: int) -> bool:
        """Whether more requests for the task are under way than a batch has gathered: worth waiting for."""
        return self._in_flight[task_name] > gathered

    def predict(self, task: Task, specs: Mapping[str, ModelSpec], inputs: Any,
                on_load: OnLoad | None = None) -> Prediction:
        """Predict over the shared cache, batched with requests for the same models that arrive together."""
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

    def preload(self, task: Task, spec: ModelSpec, on_load: OnLoad | None = None) -> ModelKey:
        """Load `spec` into the cache without running it: the cache holds models one by one."""
        with self.bundles(task, {"model": spec}, on_load):
            pass
        return self.key_for(spec)

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
        keys = [e.key for e in self.cache.stats().entries if e.key.model_id == model_id]
        return sum(self.cache.unload(key) for key in keys)
