"""The runtime: settings, device, model cache and locator, and the one way a task request runs.

validate -> pin the models the task needs in the cache (loading on a miss) -> predict under
torch.inference_mode() -> format, with provenance (models, device, dtype, milliseconds) attached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from mmdemo import registry
from mmdemo.cache import ModelCache, ModelKey
from mmdemo.config import Settings
from mmdemo.devices import default_memory_budget, dtype_name, resolve_device, resolve_dtype
from mmdemo.loading import ModelBundle, estimate_nbytes, load_bundle, require_architecture
from mmdemo.sources import HubProbe, ModelLocator
from mmdemo.tasks.base import ModelSpec, Task

log = logging.getLogger(__name__)

OnLoad = Callable[[str], None]


@dataclass(frozen=True)
class ModelChoice:
    """A curated model as the UI shows it: whether it can load here without network."""

    spec: ModelSpec
    available_offline: bool


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

    def key_for(self, spec: ModelSpec) -> ModelKey:
        return ModelKey(spec.id, spec.revision, self.device, dtype_name(self.dtype))

    @contextmanager
    def bundles(self, task: Task, specs: Mapping[str, ModelSpec],
                on_load: OnLoad | None = None) -> Iterator[dict[str, ModelBundle]]:
        """Pin the bundles for `specs` (role -> spec) for the duration of the block."""
        with ExitStack() as stack:
            loaded = {}
            for role, spec in specs.items():
                loaded[role] = stack.enter_context(self._use(task, spec, on_load))
            yield loaded

    def _use(self, task: Task, spec: ModelSpec, on_load: OnLoad | None):
        path = self.locator.locate(spec.id, spec.revision)  # may download: outside the cache's lock
        require_architecture(path, task.architectures)  # also on a cache hit from another task

        def loader() -> ModelBundle:
            return load_bundle(path, device=self.device, dtype=self.dtype, allowed=task.architectures)

        notify = (lambda key: on_load(key.model_id)) if on_load else None
        return self.cache.use(self.key_for(spec), loader, estimate=estimate_nbytes(path, self.dtype),
                              on_load=notify)

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
        inputs = task.validate(raw, self.settings)
        specs = task.models_needed(inputs)
        with self.bundles(task, specs, on_load) as bundles:
            started = time.perf_counter()
            with torch.inference_mode():
                output = task.predict(bundles, inputs)
            milliseconds = (time.perf_counter() - started) * 1000
        result = task.format(output, inputs)
        result["provenance"] = {
            "models": {role: spec.id for role, spec in specs.items()},
            "revisions": {role: spec.revision for role, spec in specs.items()},
            "device": self.device,
            "dtype": dtype_name(self.dtype),
            "ms": round(milliseconds, 1),
        }
        return result

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
