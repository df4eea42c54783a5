"""The runtime: the one way a task request runs, whatever runs its models.

validate -> predict (on the predictor: the local one pins the models in the shared cache, a remote one sends the
clean inputs to a server) -> format, with provenance (models, device, dtype, milliseconds) attached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from mmdemo import registry
from mmdemo.config import Settings
from mmdemo.models.loading import ModelKey
from mmdemo.models.sources import ModelLocator
from mmdemo.tasks.base import ModelSpec, Task

OnLoad = Callable[[str], None]


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


class Predictor(Protocol):
    """Where a task's models run: in this process (`runtime.local.LocalPredictor`) or on a Ray Serve cluster
    (`serving.predictor.RayPredictor`). The runtime validates and formats; the predictor only predicts."""

    max_batch: int  # the most requests one batch takes: the UI admits that many at once to a tab that batches

    def incoming(self, task: Task) -> AbstractContextManager[None]:
        """Held around a request from before its validation to its result: a batching predictor waits for it."""

    def predict(self, task: Task, specs: Mapping[str, ModelSpec], inputs: Any,
                on_load: OnLoad | None = None) -> Prediction:
        """Run the task's predict on clean inputs with the models `specs` names by role."""

    def preload(self, task: Task, spec: ModelSpec, on_load: OnLoad | None = None) -> ModelKey:
        """Load `spec` for `task` without running it (with the rest of its `Task.model_set` where the predictor
        loads model sets as one unit); its key."""

    def cache_report(self) -> dict[str, Any]:
        """The resident models and the cache's counters as plain JSON, warmest entry first."""

    def unload(self, model_id: str) -> int:
        """Evict every resident entry of `model_id`; how many were evicted."""

    def import_model_code_in_background(self, then: Callable[[], None] | None = None) -> None:
        """Import what the first load needs once the app serves; `then` runs afterwards."""


class Runtime:
    """Everything a request needs beyond its inputs; one per process, shared by all tabs.

    Args:
        settings: the app's settings (limits for validation, the custom-model switch).
        predictor: where predictions run.
        locator: where checkpoints are found; only for the model picker's offline marks here.
    """

    def __init__(self, settings: Settings, predictor: Predictor, locator: ModelLocator) -> None:
        self.settings = settings
        self.predictor = predictor
        self.locator = locator

    @property
    def max_batch(self) -> int:
        return self.predictor.max_batch

    def run(self, task_name: str, raw: Mapping[str, Any], *, on_load: OnLoad | None = None) -> dict[str, Any]:
        """Validate, predict and format one request for the task called `task_name`.

        Args:
            task_name: a registered task.
            raw: the raw values from the UI or API, by the names the task's validate reads.
            on_load: told the model id before a model loads (cache miss), for a progress message.
        Returns:
            The task's formatted result plus "provenance": models, device, dtype and milliseconds.
        Raises:
            VisitorError (InputError, ModelUnavailableError, BusyError): with a message meant for the visitor.
        """
        task = registry.get(task_name)
        with self.predictor.incoming(task):
            inputs = task.validate(raw, self.settings)
            specs = task.models_needed(inputs)
            prediction = self.predictor.predict(task, specs, inputs, on_load)
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

    def preload(self, task_name: str, model_id: str | None = None, on_load: OnLoad | None = None) -> ModelKey:
        """Load a task's model (default: its default model) without running it; its cache key."""
        task = registry.get(task_name)
        spec = task.model_spec(model_id, allow_custom=self.settings.allow_custom_models)
        return self.predictor.preload(task, spec, on_load)

    def model_choices(self, task_name: str) -> list[ModelChoice]:
        """The task's curated models, each marked by whether it can load without network."""
        task = registry.get(task_name)
        return [ModelChoice(spec, self.locator.is_local(spec.id)) for spec in task.models]

    def hub_reachable(self) -> bool:
        return self.locator.probe.reachable()

    def cache_report(self) -> dict[str, Any]:
        return self.predictor.cache_report()

    def unload(self, model_id: str) -> int:
        return self.predictor.unload(model_id)

    def import_model_code_in_background(self, then: Callable[[], None] | None = None) -> None:
        self.predictor.import_model_code_in_background(then)

