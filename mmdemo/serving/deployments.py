"""The Ray side: `ModelServer`, one deployment per task family, each replica with its own models.

A replica keeps the models its requests name (the multiplexed model id, see `families`) through Serve's model
multiplexing: at most `max_models_per_replica`, least recently used evicted, and Serve routes a request to a replica
that already holds its model. Requests whose task gives a batch key go through Serve's request batching and share
one `predict_batch` call per (model, task, batch key); the others run alone. Models load as the in-process runtime
loads them (`ModelLoader`: same device, dtype and CPU formats). One forward pass runs at a time per replica.

`python -m mmdemo.serving` deploys from `serve_config.yaml`; `family_app` is the same deployment for `serve deploy`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray
import torch
from ray import serve

from mmdemo import registry
from mmdemo.config import Settings, settings_from_env
from mmdemo.errors import VisitorError
from mmdemo.models.devices import dtype_name
from mmdemo.models.loader import ModelLoader
from mmdemo.models.loading import ModelBundle, architecture_of
from mmdemo.runtime.model_threads import run_on_own_thread
from mmdemo.serving.board import board
from mmdemo.serving.config import ReplicaOptions, ServeConfig
from mmdemo.serving.families import Family, get_family, parse_model_id
from mmdemo.serving.messages import ServeReply, ServeRequest
from mmdemo.tasks.base import ModelSpec, Task

log = logging.getLogger("ray.serve")  # Serve writes this logger to the replica's log file


class ResidentModels:
    """One multiplexed model on a replica: its bundles by role, and how it was used."""

    def __init__(self, model_id: str, bundles: Mapping[str, ModelBundle], load_seconds: float,
                 on_unload: Callable[[ResidentModels], None]) -> None:
        self.model_id = model_id
        self.bundles = dict(bundles)
        self.load_seconds = load_seconds
        self.hits = 0
        self.last_used = time.time()
        self.in_use = 0
        self._on_unload: Callable[[ResidentModels], None] | None = on_unload

    @property
    def nbytes(self) -> int:
        return sum(bundle.nbytes for bundle in self.bundles.values())

    def __del__(self) -> None:
        """Serve calls this when it evicts the model (and Python again when it collects it): forget it once."""
        on_unload, self._on_unload = self._on_unload, None
        if on_unload is not None:
            on_unload(self)


@serve.deployment(logging_config={"enable_access_log": False})
class ModelServer:
    """A family's models on one replica: `__call__` answers a `ServeRequest` with a `ServeReply`."""

    def __init__(self, family: str, settings: Settings, tasks: Sequence[Task] | None = None) -> None:
        """`tasks`: the family's tasks as the front end registered them (default: the registry's, built-ins
        registered); they travel by reference to their classes, so a task defined outside mmdemo.tasks serves too."""
        self.family = get_family(family) if tasks is None else Family(family, tuple(task.name for task in tasks))
        self.tasks = {task.name: task for task in tasks} if tasks is not None else {
            name: registry.get(name) for name in self.family.tasks}
        self.loader = ModelLoader(settings)
        self.name = f"{family}#{serve.get_replica_context().replica_id.unique_id}"
        self._actor_name = ray.get_runtime_context().get_actor_name()
        self._resident: dict[str, ResidentModels] = {}
        self._misses = self._evictions = 0
        self._compute = asyncio.Lock()  # one forward pass at a time: parallel ones only slow each other down
        self._board = board()
        self._get_models: Callable[[str], Any] | None = None
        self._batched = serve.batch(self._run_batch)
        self.options = ReplicaOptions()
        self.reconfigure({})  # the defaults until Serve passes the deployment's user_config

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Apply the deployment's user_config (`ReplicaOptions`); Serve calls it at start and on every change."""
        options = ReplicaOptions.from_user_config(user_config)
        if self._get_models is None or options.max_models_per_replica != self.options.max_models_per_replica:
            # A new limit starts a new (empty) multiplexed cache; the old one's models go with it.
            async def load(model_id: str) -> ResidentModels:
                return await self._load(model_id)

            self._get_models = serve.multiplexed(max_num_models_per_replica=options.max_models_per_replica)(load)
            self._resident.clear()
        self._batched.set_max_batch_size(options.max_batch_size)
        self._batched.set_batch_wait_timeout_s(options.batch_wait_timeout_s)
        self.options = options
        self._post()

    async def __call__(self, request: ServeRequest) -> ServeReply:
        task = self._task(request.task)
        if self.options.max_batch_size > 1 and task.batch_key(request.inputs) is not None:
            return await self._batched(request)
        return (await self._predict(request.model_id, task, [request]))[0]

    async def preload(self, model_id: str) -> ServeReply:
        """Load `model_id` (a multiplexed model id) on this replica without running it."""
        try:
            await self._models(model_id)
        except VisitorError as e:
            return ServeReply(error=e, replica=self.name)
        return ServeReply(device=self.loader.device, dtype=self._dtype(parse_model_id(model_id)), replica=self.name)

    async def _run_batch(self, requests: list[ServeRequest]) -> list[ServeReply]:
        """Serve's batch (one model id): one predict_batch call per task and batch key, replies in request order."""
        groups: dict[tuple[str, Any], list[int]] = {}
        for index, request in enumerate(requests):
            key = (request.task, self._task(request.task).batch_key(request.inputs))
            groups.setdefault((request.model_id, key), []).append(index)
        replies: list[ServeReply | None] = [None] * len(requests)
        for (model_id, (task_name, _)), indices in groups.items():
            group = [requests[i] for i in indices]
            for index, reply in zip(indices, await self._predict(model_id, self._task(task_name), group), strict=True):
                replies[index] = reply
        return replies  # type: ignore[return-value]

    async def _predict(self, model_id: str, task: Task, requests: Sequence[ServeRequest]) -> list[ServeReply]:
        try:
            models = await self._models(model_id)
        except VisitorError as e:
            return [ServeReply(error=e, replica=self.name)] * len(requests)
        models.in_use += 1
        self._post()
        try:
            async with self._compute:
                started = time.perf_counter()
                outputs = await asyncio.to_thread(self._on_model_thread, _forward, task, models.bundles,
                                                  [r.inputs for r in requests])
                ms = (time.perf_counter() - started) * 1000
        except VisitorError as e:
            return [ServeReply(error=e, replica=self.name)] * len(requests)
        finally:
            models.in_use -= 1
            models.last_used = time.time()
            self._post()
        if len(outputs) != len(requests):
            raise RuntimeError(f"{task.name}.predict_batch gave {len(outputs)} outputs for {len(requests)} inputs")
        dtype = self._dtype(parse_model_id(model_id))
        return [ServeReply(output, len(requests), self.loader.device, dtype, ms, self.name) for output in outputs]

    async def _models(self, model_id: str) -> ResidentModels:
        """The multiplexed model, loading it (and evicting the least recently used) on a miss."""
        resident = self._resident.get(model_id)
        models = await self._get_models(model_id)
        if resident is models:
            models.hits += 1
        return models

    async def _load(self, model_id: str) -> ResidentModels:
        """Serve's multiplexed loader: the bundles of every role in `model_id`, loaded as the runtime loads them."""
        specs = parse_model_id(model_id)
        started = time.perf_counter()
        bundles = await asyncio.to_thread(
            lambda: {role: self._on_model_thread(self.loader.load, self._task_for(spec), spec)
                     for role, spec in specs.items()})
        models = ResidentModels(model_id, bundles, time.perf_counter() - started, self._forget)
        self._resident[model_id] = models
        self._misses += 1
        log.info("%s loaded %s in %.2f s", self.name, model_id, models.load_seconds)
        self._post()
        return models

    def _forget(self, models: ResidentModels) -> None:
        if self._resident.get(models.model_id) is models:
            del self._resident[models.model_id]
            self._evictions += 1
            log.info("%s evicted %s (least recently used)", self.name, models.model_id)
            self._post()

    def _task(self, name: str) -> Task:
        if name not in self.tasks:
            raise ValueError(f"The {self.family.name} deployment serves {', '.join(self.tasks)}, not {name}")
        return self.tasks[name]

    def _task_for(self, spec: ModelSpec) -> Task:
        """The family's task that drives this checkpoint's architecture (the first one refuses it otherwise)."""
        tasks = list(self.tasks.values())
        if len(tasks) == 1:
            return tasks[0]
        architecture = architecture_of(self.loader.locator.locate(spec.id, spec.revision))
        return next((task for task in tasks if architecture in task.architectures), tasks[0])

    def _on_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Model work on a thread of its own on CPU, as the local predictor does it (`runtime.model_threads`)."""
        return run_on_own_thread(fn, *args) if self.loader.device == "cpu" else fn(*args)

    def _dtype(self, specs: Mapping[str, ModelSpec]) -> str:
        """As the in-process runtime reports it: each model's dtype ("int8" where quantized), sorted and joined."""
        return "+".join(sorted({self.loader.key_for(spec).dtype for spec in specs.values()}))

    def _post(self) -> None:
        """Tell the board what this replica holds (fire and forget)."""
        entries = [
            {"model": m.model_id, "revision": None, "device": self.loader.device,
             "dtype": self._dtype(parse_model_id(m.model_id)) or dtype_name(self.loader.dtype), "bytes": m.nbytes,
             "load_seconds": round(m.load_seconds, 3), "hits": m.hits, "last_used": m.last_used,
             "in_use": m.in_use > 0, "replica": self.name}
            for m in sorted(self._resident.values(), key=lambda m: -m.last_used)
        ]
        report = {"deployment": self.family.name, "replica": self.name, "device": self.loader.device,
                  "dtype": dtype_name(self.loader.dtype), "max_models": self.options.max_models_per_replica,
                  "hits": sum(m.hits for m in self._resident.values()), "misses": self._misses,
                  "evictions": self._evictions, "entries": entries}
        self._board.post.remote(self._actor_name, report)


def _forward(task: Task, bundles: Mapping[str, ModelBundle], batch: list[Any]) -> list[Any]:
    """predict_batch under inference mode (thread-local: entered in the worker thread that computes)."""
    with torch.inference_mode():
        return task.predict_batch(bundles, batch)


def bind_family(family: str, settings: Settings, config: ServeConfig) -> Any:
    """The family's Serve application: ModelServer with the config's deployment options, built with `settings`
    and the family's registered tasks."""
    tasks = [registry.get(name) for name in get_family(family).tasks]
    return ModelServer.options(**config.deployment_options(family)).bind(family, settings, tasks)


def family_app(args: Mapping[str, Any]) -> Any:
    """Application builder for `serve deploy serve_config.yaml`: settings from the replicas' MMDEMO_* environment."""
    family = get_family(str(args["family"])).name
    return ModelServer.options(name=family).bind(family, settings_from_env())
