"""The front end's side: `RayPredictor`, the runtime's predictor that runs each request on its family's deployment.

Validation (decoding uploads) and formatting stay in the Gradio process; only the clean, picklable inputs travel,
with the request's models as the multiplexed model id, so Serve routes it to a replica that holds them. A dead or
restarting replica, an overloaded deployment or an unreachable cluster gives the visitor a one-line "temporarily
unavailable" within the family's `request_timeout_s`, never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import ray
from ray import serve
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException

from mmdemo.config import Settings
from mmdemo.errors import BusyError, InputError, VisitorError
from mmdemo.models.loading import ModelKey
from mmdemo.runtime import OnLoad, Prediction
from mmdemo.serving.board import existing_board
from mmdemo.serving.config import ServeConfig, load_config
from mmdemo.serving.families import family_for, multiplexed_model_id
from mmdemo.serving.messages import ServeReply, ServeRequest
from mmdemo.tasks.base import ModelSpec, Task

log = logging.getLogger(__name__)

REPORT_TIMEOUT_S = 5.0  # the Models panel's wait for the board
REPLICA_KEYS = ("deployment", "replica", "max_models", "hits", "misses", "evictions")
# What a replica that died, restarts or is overloaded looks like to a caller: the request may succeed if retried.
TEMPORARY_ERRORS = (RayActorError, BackPressureError, DeploymentUnavailableError, TimeoutError, GetTimeoutError,
                    ConnectionError)


def temporarily_unavailable(family: str) -> BusyError:
    return BusyError("error.serving.unavailable", family=family)


class RayPredictor:
    """Predicts on Ray Serve deployments; the runtime validates and formats in this process.

    Args:
        settings: the app's settings; `ray_address` names the cluster (ignored when Ray is already initialized).
        config: the Serve config the deployments were made from (default: `load_config()`), for batch sizes
            and request timeouts.
    """

    def __init__(self, settings: Settings, *, config: ServeConfig | None = None) -> None:
        self.config = config or load_config()
        if not ray.is_initialized():
            ray.init(address=settings.ray_address, log_to_driver=False, logging_level=logging.WARNING)
        self._handles = {name: serve.get_deployment_handle(name, app_name=name) for name in self.config.deployments}
        try:
            running = set(serve.status().applications)
        except Exception as e:  # noqa: BLE001  (reported, not fatal: requests say "temporarily unavailable")
            log.warning("Cannot read Serve's status (%s): is the cluster up?", e)
        else:
            missing = [name for name in self.config.deployments if name not in running]
            if missing:
                log.warning("Not deployed on the cluster: %s; deploy with `python -m mmdemo.serving deploy`",
                            ", ".join(missing))

    @property
    def max_batch(self) -> int:
        return self.config.max_batch_size

    def incoming(self, task: Task) -> AbstractContextManager[None]:
        """Nothing to count here: the replicas batch what reaches them together."""
        return nullcontext()

    def predict(self, task: Task, specs: Mapping[str, ModelSpec], inputs: Any,
                on_load: OnLoad | None = None) -> Prediction:
        """Run the request on its family's deployment; the replica batches it with others where the task allows."""
        family = family_for(task.name).name
        model_id = multiplexed_model_id(specs)
        reply = self._call(family, model_id, "__call__", ServeRequest(task.name, model_id, inputs))
        return Prediction(reply.output, reply.batch_size, reply.device, reply.dtype, reply.ms)

    def _call(self, family: str, model_id: str, method: str, *args: Any) -> ServeReply:
        """One handle call, with a bounded wait; the replica's refusals re-raised, Ray's failures as BusyError."""
        timeout = self.config.replica_options(family).request_timeout_s
        handle = self._handles[family].options(multiplexed_model_id=model_id, method_name=method)
        response = None
        try:
            response = handle.remote(*args)
            reply: ServeReply = response.result(timeout_s=timeout)
        except TEMPORARY_ERRORS as e:
            if response is not None:
                response.cancel()
            log.warning("%s request failed for now: %s", family, e.__class__.__name__)
            raise temporarily_unavailable(family) from e
        except RayTaskError as e:
            if isinstance(e.cause, VisitorError):  # a refusal the replica did not catch: the error itself, key kept
                raise e.cause from e  # (Ray's wrapper would read as a traceback)
            raise  # the replica's own failure: logged and shown as unexpected by the UI
        except (RayServeException, RayError) as e:
            log.warning("%s request failed in Ray: %r", family, e)
            raise temporarily_unavailable(family) from e
        if reply.error is not None:
            raise reply.error
        return reply

    def import_model_code_in_background(self, then: Callable[[], None] | None = None) -> None:
        """Models load in the Ray replicas, not here: nothing to import ahead of them; `then` runs at once."""
        if then is not None:
            then()

    def preload(self, task: Task, spec: ModelSpec, on_load: OnLoad | None = None) -> ModelKey:
        """Load `spec` on a replica of the task's family without running it, with the rest of its model set
        (`Task.model_set`): a replica loads a request's models as one multiplexed model."""
        if on_load:
            on_load(spec.id)
        model_id = multiplexed_model_id(task.model_set(spec))
        reply = self._call(family_for(task.name).name, model_id, "preload", model_id)
        return ModelKey(spec.id, spec.revision, reply.device, reply.dtype)

    def cache_report(self) -> dict[str, Any]:
        """What every replica holds, from the board: per replica entries, and totals over all of them."""
        board = existing_board()
        try:
            reports = ray.get(board.reports.remote(), timeout=REPORT_TIMEOUT_S) if board is not None else []
        except (RayError, TimeoutError) as e:
            raise BusyError("error.serving.report_unavailable") from e
        entries = [entry for report in reports for entry in report["entries"]]
        devices = sorted({report["device"] for report in reports}) or ["remote"]
        dtypes = sorted({report["dtype"] for report in reports}) or ["remote"]
        return {
            "backend": "ray",
            "device": "+".join(devices),
            "dtype": "+".join(dtypes),
            "budget_bytes": 0,  # replicas limit models by count (max_models), not bytes
            "used_bytes": sum(entry["bytes"] for entry in entries),
            "hits": sum(report["hits"] for report in reports),
            "misses": sum(report["misses"] for report in reports),
            "evictions": sum(report["evictions"] for report in reports),
            "entries": entries,
            "replicas": [{**{key: report[key] for key in REPLICA_KEYS},
                          "models": [entry["model"] for entry in report["entries"]]} for report in reports],
        }

    def unload(self, model_id: str) -> int:
        raise InputError("error.serving.no_unload")
