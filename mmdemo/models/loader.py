"""`ModelLoader`: from a curated model spec to a loaded bundle, as every backend loads it.

It finds the checkpoint (`sources`), checks its architecture against the task's, picks the device, dtype and CPU
format (`formats`), names the result (`ModelKey`) and loads it (`loading`). It keeps no models: the local predictor
keeps them in the shared cache, a Ray replica in Serve's multiplexed cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mmdemo.config import Settings
from mmdemo.models.devices import resolve_device, resolve_dtype
from mmdemo.models.formats import check_quantize_setting, cpu_format, format_dtype, format_label, size_factor
from mmdemo.models.loading import (
    QUANTIZATIONS,
    ModelBundle,
    ModelKey,
    estimate_nbytes,
    import_model_code,
    load_bundle,
    require_architecture,
)
from mmdemo.models.sources import HubProbe, ModelLocator
from mmdemo.tasks.base import ModelSpec, Task

log = logging.getLogger(__name__)

# The longest a load waits for the background import of model code before it goes ahead.
IMPORT_WAIT_SECONDS = 120


@dataclass(frozen=True)
class Located:
    """A checkpoint found for a spec: its directory, architecture, and expected bytes in memory."""

    path: Path
    architecture: str
    estimate: int


class ModelLoader:
    """Locates and loads the models of a task on this process's device, in the format the settings choose."""

    def __init__(self, settings: Settings, locator: ModelLocator | None = None) -> None:
        check_quantize_setting(settings.quantize)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(self.device, settings.dtype)
        self.locator = locator or ModelLocator(settings.model_dir, HubProbe(settings.hub_timeout))
        self._architectures: dict[tuple[str, str | None], str] = {}  # learnt when a model is first located
        self._code_imported = threading.Event()  # cleared while model code imports in the background
        self._code_imported.set()

    def format_of(self, architecture: str) -> str | None:
        return cpu_format(architecture, device=self.device, dtype=self.dtype, setting=self.settings.quantize)

    def key_for(self, spec: ModelSpec) -> ModelKey:
        """The cache key of `spec` as loaded here (its dtype label is exact once the spec has been located)."""
        architecture = self._architectures.get((spec.id, spec.revision), "")
        return ModelKey(spec.id, spec.revision, self.device, format_label(self.format_of(architecture), self.dtype))

    def locate(self, task: Task, spec: ModelSpec) -> Located:
        """Find the checkpoint (downloading it if needed) and check that `task` can drive it."""
        path = self.locator.locate(spec.id, spec.revision)
        architecture = require_architecture(path, task.architectures)  # also on a cache hit from another task
        self._architectures[(spec.id, spec.revision)] = architecture
        # Quantized Linear layers shrink a model; the exact size is measured once loaded.
        estimate = int(estimate_nbytes(path, self.dtype) * size_factor(self.format_of(architecture)))
        return Located(path, architecture, estimate)

    def load(self, task: Task, located: Located | ModelSpec) -> ModelBundle:
        """Load a located checkpoint (or locate `spec` first) on the device, in its format, outside any cache."""
        if isinstance(located, ModelSpec):
            located = self.locate(task, located)
        self._code_imported.wait(IMPORT_WAIT_SECONDS)
        fmt = self.format_of(located.architecture)
        return load_bundle(located.path, device=self.device, dtype=format_dtype(fmt, self.dtype),
                           allowed=task.architectures, quantize=fmt if fmt in QUANTIZATIONS else None)

    def import_model_code_in_background(self, architectures: Iterable[str],
                                        then: Callable[[], None] | None = None) -> None:
        """Import the model code of `architectures` in a daemon thread; loads wait until it is done.

        Call it once the app serves (not before: it would hold the GIL while the server starts). A visitor's first
        click then finds transformers imported; one that comes sooner waits for the import it would have done
        itself, and no two threads import the same modules at once. `then` runs in that thread afterwards, while
        those loads still wait: it never sees a model half loaded (the collector's freeze must not catch one).
        """
        self._code_imported.clear()
        names = sorted(set(architectures))

        def run() -> None:
            started = time.perf_counter()
            try:
                import_model_code(names)
                log.info("Imported the model code of every tab in %.1f s", time.perf_counter() - started)
            except Exception:  # a broken import shows again, with its cause, when a model of it loads
                log.exception("Importing model code ahead of the first request failed")
            try:
                if then is not None:
                    then()
            finally:
                self._code_imported.set()

        threading.Thread(target=run, name="mmdemo-import-model-code", daemon=True).start()
