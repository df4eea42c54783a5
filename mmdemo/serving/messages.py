"""What the front end sends a deployment and what comes back: small, picklable, nothing Ray-specific."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServeRequest:
    """One validated request: the task, its models (the multiplexed model id) and its clean inputs."""

    task: str
    model_id: str  # families.multiplexed_model_id of the request's models
    inputs: Any  # the task's validated inputs (PIL images and numpy audio pickle as they are)


@dataclass(frozen=True)
class ServeReply:
    """A task's raw output for one request and where it ran; or the visitor-facing error it was refused with.

    Errors meant for the visitor travel as values: Ray wraps a raised exception in its own error type.
    """

    output: Any = None
    batch_size: int = 1
    device: str = ""
    dtype: str = ""
    ms: float = 0.0  # predict time on the replica, model loading excluded
    replica: str = ""  # the replica that answered, e.g. "clip#3xk2a9"
    error: Exception | None = None
