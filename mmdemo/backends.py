"""Assembling the runtime for `settings.backend`: models in this process (local) or on Ray Serve (ray)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmdemo.config import Settings
from mmdemo.models.loader import ModelLoader
from mmdemo.models.sources import HubProbe, ModelLocator
from mmdemo.runtime.cache import ModelCache
from mmdemo.runtime.core import Runtime
from mmdemo.runtime.local import LocalPredictor

if TYPE_CHECKING:
    from mmdemo.serving.config import ServeConfig

BACKENDS = ("local", "ray")


def local_runtime(settings: Settings, *, cache: ModelCache | None = None) -> Runtime:
    """A runtime whose models run in this process, over one shared cache."""
    loader = ModelLoader(settings)
    return Runtime(settings, LocalPredictor(loader, cache=cache), loader.locator)


def ray_runtime(settings: Settings, *, config: ServeConfig | None = None) -> Runtime:
    """A runtime whose models run on the Ray Serve deployments made from `config` (default: `load_config()`)."""
    from mmdemo.serving.predictor import RayPredictor  # imports ray: only when asked for

    locator = ModelLocator(settings.model_dir, HubProbe(settings.hub_timeout))
    return Runtime(settings, RayPredictor(settings, config=config), locator)


def create_runtime(settings: Settings) -> Runtime:
    """The runtime for `settings.backend` (MMDEMO_BACKEND)."""
    if settings.backend == "local":
        return local_runtime(settings)
    if settings.backend == "ray":
        return ray_runtime(settings)
    raise ValueError(f"Unknown backend {settings.backend!r}: choose {', '.join(BACKENDS)} (MMDEMO_BACKEND)")
