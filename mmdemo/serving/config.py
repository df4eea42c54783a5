"""The Serve config file (`serve_config.yaml`): each family's deployment options and mmdemo's replica options.

The file is Ray Serve's own format (one application per family, validated with Serve's schema), so the deployment
options mean what Serve's documentation says. `user_config` holds mmdemo's options (`ReplicaOptions`); Serve hands
it to the replicas' `reconfigure`, and the front end reads the batch sizes and request timeouts from it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from mmdemo.serving.families import families

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"
CONFIG_ENV = "MMDEMO_SERVE_CONFIG"


@dataclass(frozen=True)
class ReplicaOptions:
    """A deployment's `user_config`: mmdemo's options for its replicas (and the front end's timeout)."""

    max_models_per_replica: int = 2  # checkpoints (sentiment: model sets) one replica keeps; LRU eviction
    max_batch_size: int = 8  # most requests in one predict_batch call; 1 turns batching off
    batch_wait_timeout_s: float = 0.01  # how long a batch waits for more requests after its first
    request_timeout_s: float = 120.0  # front end: a request's longest wait before "temporarily unavailable"

    def __post_init__(self) -> None:
        if self.max_models_per_replica < 1 or self.max_batch_size < 1:
            raise ValueError("max_models_per_replica and max_batch_size must be at least 1, got "
                             f"{self.max_models_per_replica} and {self.max_batch_size}")
        if self.batch_wait_timeout_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("batch_wait_timeout_s must be >= 0 and request_timeout_s > 0, got "
                             f"{self.batch_wait_timeout_s} and {self.request_timeout_s}")

    @classmethod
    def from_user_config(cls, config: Mapping[str, Any] | None) -> ReplicaOptions:
        """Options from a user_config mapping; unknown keys are refused with the valid ones listed."""
        config = dict(config or {})
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"Unknown user_config keys {', '.join(unknown)}: valid are {', '.join(known)}")
        types = {f.name: type(f.default) for f in fields(cls)}
        try:
            return cls(**{name: types[name](value) for name, value in config.items()})
        except (TypeError, ValueError) as e:
            raise ValueError(f"Bad user_config {config}: {e}") from e


@dataclass(frozen=True)
class ServeConfig:
    """The parsed file: Serve's top-level options and each family's deployment options."""

    path: Path
    proxy_location: str
    deployments: Mapping[str, Mapping[str, Any]]  # family -> Serve deployment options (name, num_replicas, ...)

    def deployment_options(self, family: str) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options` (a copy)."""
        return copy.deepcopy(dict(self.deployments[family]))

    def replica_options(self, family: str) -> ReplicaOptions:
        return ReplicaOptions.from_user_config(self.deployments[family].get("user_config"))

    @property
    def max_batch_size(self) -> int:
        """The largest batch any deployment takes: the front end admits that many requests to a batching tab."""
        return max(self.replica_options(family).max_batch_size for family in self.deployments)

    def logical_cpus(self) -> float:
        """CPUs Ray must offer to place every deployment at its largest replica count."""
        total = 0.0
        for options in self.deployments.values():
            autoscaling = options.get("autoscaling_config") or {}
            replicas = autoscaling.get("max_replicas") or options.get("num_replicas") or 1
            total += replicas * (options.get("ray_actor_options") or {}).get("num_cpus", 1)
        return total

    def with_options(self, family: str, **options: Any) -> ServeConfig:
        """This config with `family`'s deployment options updated (e.g. num_replicas=2 for a benchmark).

        num_replicas replaces autoscaling_config and the other way round; user_config entries are merged.
        """
        deployments = {name: copy.deepcopy(dict(value)) for name, value in self.deployments.items()}
        target = deployments[family]
        if "num_replicas" in options:
            target.pop("autoscaling_config", None)
        if "autoscaling_config" in options:
            target.pop("num_replicas", None)
        if "user_config" in options:
            options = {**options, "user_config": {**(target.get("user_config") or {}), **options["user_config"]}}
        target.update(options)
        ReplicaOptions.from_user_config(target.get("user_config"))
        return ServeConfig(self.path, self.proxy_location, deployments)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


def load_config(path: Path | str | None = None) -> ServeConfig:
    """Read and check a Serve config file (default: MMDEMO_SERVE_CONFIG, else the repository's serve_config.yaml).

    An application in it is a family with one deployment, both named after the family; a family the file does not
    name gets `default_deployment`.
    """
    from ray.serve.schema import ServeDeploySchema

    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        ServeDeploySchema.model_validate(raw)  # Serve's own checks: option names, types, autoscaling bounds
    except OSError as e:
        raise ValueError(f"Cannot read the Serve config {path}: {e.strerror}; set {CONFIG_ENV}") from e
    except Exception as e:  # yaml and pydantic errors
        raise ValueError(f"{path} is not a valid Serve config: {e}") from e
    every = families()
    deployments: dict[str, dict[str, Any]] = {}
    for application in raw.get("applications") or []:
        family = application.get("name")
        if family not in every:
            raise ValueError(f"{path}: application {family!r} is not a family: name them {', '.join(every)}")
        entries = application.get("deployments") or []
        if len(entries) != 1 or entries[0].get("name") != family:
            raise ValueError(f"{path}: application {family!r} needs exactly one deployment, also named {family!r}")
        ReplicaOptions.from_user_config(entries[0].get("user_config"))
        deployments[family] = dict(entries[0])
    for family in every:
        deployments.setdefault(family, default_deployment(family))
    return ServeConfig(path, str(raw.get("proxy_location") or "Disabled"), deployments)


def default_deployment(family: str) -> dict[str, Any]:
    """The deployment options of a family that the config file does not name: one replica on one CPU, mmdemo's
    replica options at their defaults."""
    return {"name": family, "num_replicas": 1, "max_ongoing_requests": 2 * ReplicaOptions.max_batch_size,
            "ray_actor_options": {"num_cpus": 1, "num_gpus": 0}, "user_config": {}}
