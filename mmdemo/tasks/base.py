"""The task contract: what a task is, and validate -> predict -> format.

A task never imports Gradio and never touches the cache itself: the runtime resolves the models a
task needs, pins them in the cache, and hands the loaded bundles to `predict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.i18n import Message, has
from mmdemo.media.pixels import reduce_for
from mmdemo.models.loading import ModelBundle

__all__ = ["Comparable", "InputError", "ModelSpec", "Task", "clean_text", "image_pixels", "stacked_pixels"]

InputsT = TypeVar("InputsT")

# GPU seconds every call needs on ZeroGPU before a task computes anything: forking the worker, CUDA start-up,
# copying the cached weights to the GPU, first-call kernel set-up. Tasks add their own estimate to it.
GPU_SETUP_SECONDS = 10.0
# For a task that does not estimate its calls: ZeroGPU's own default duration.
DEFAULT_GPU_SECONDS = 60.0


@dataclass(frozen=True)
class ModelSpec:
    """A model a task can run: hub id, pinned revision, and a short note for the model picker."""

    id: str
    revision: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Comparable:
    """What compare mode lines up across models for one result (see `Task.compare_view`).

    text: the headline answer (an answer, a caption, the top label, a transcript).
    ranking: the labels best first with their scores, for tasks that rank (empty otherwise).
    words: whether `text` is free text, shown as a word diff against the first model's.
    details: a few more plain-text lines for the column (segments, other captions, per-modality verdicts).
    """

    text: str
    ranking: tuple[tuple[str, float], ...] = ()
    words: bool = False
    details: tuple[str, ...] = ()

    @property
    def top(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.ranking)


class Task(ABC, Generic[InputsT]):
    """One demo: subclasses declare the class attributes and implement validate, predict and format."""

    name: ClassVar[str]  # registry key and API name, e.g. "vqa"
    title: ClassVar[str]  # tab title
    description: ClassVar[str]  # one sentence under the tab title
    models: ClassVar[tuple[ModelSpec, ...]]  # curated choices, default first
    architectures: ClassVar[frozenset[str]]  # transformers classes this task can drive
    # The Ray Serve deployment that runs this task's models (mmdemo.serving.families): tasks that share models share
    # one. None: a deployment of its own, named after the task, with the default options (serve_config.yaml).
    serve_family: ClassVar[str | None] = None
    has_tab: ClassVar[bool] = True  # False: a part of another task's tab (the live speech step), no tab of its own
    compare_input: ClassVar[str] = "model"  # the raw input that compare mode varies across models
    extra_model_ids: ClassVar[tuple[str, ...]] = ()  # values of compare_input besides the curated ids (a lexicon)

    @property
    def title_message(self) -> Message | str:
        """The tab title in the visitor's language (`task.<name>.title`); the title itself for a task without a
        catalogue entry (a test's throwaway task)."""
        key = f"task.{self.name}.title"
        return Message(key) if has(key) else self.title

    @property
    def default_model(self) -> ModelSpec:
        return self.models[0]

    def model_spec(self, model_id: str | None, *, allow_custom: bool = False) -> ModelSpec:
        """The curated spec for `model_id` (None: the default); free ids only when custom models are allowed."""
        if not model_id:
            return self.default_model
        for spec in self.models:
            if spec.id == model_id:
                return spec
        if allow_custom and "/" in model_id:
            return ModelSpec(model_id.strip())
        choices = ", ".join(spec.id for spec in self.models)
        raise InputError("error.task.unknown_model", model=model_id, task=self.title_message, choices=choices)

    def models_needed(self, inputs: InputsT) -> Mapping[str, ModelSpec]:
        """The models one request needs, by role; most tasks need just their chosen model."""
        return {"model": inputs.model}  # type: ignore[attr-defined]

    def model_set(self, spec: ModelSpec) -> Mapping[str, ModelSpec]:
        """The models, by role, that a request using `spec` needs when it gives every input: what a backend that
        loads a request's models as one unit (a Ray Serve replica) preloads for `spec`."""
        return {"model": spec}

    @abstractmethod
    def validate(self, raw: Mapping[str, Any], settings: Settings) -> InputsT:
        """Turn raw UI/API values into clean inputs, or raise InputError with one actionable line.

        `raw["model"]` is a model id or None; validate resolves it with `model_spec`.
        """

    @abstractmethod
    def predict(self, bundles: Mapping[str, ModelBundle], inputs: InputsT) -> Any:
        """Run the models; called under torch.inference_mode() with the bundles pinned in the cache."""

    def preprocess(self, bundles: Mapping[str, ModelBundle], inputs: InputsT) -> InputsT:
        """Per-request work on the loaded models that needs no other request (an image's pixel values).

        The runtime calls it in the request's own thread before the request joins a batch, so the requests of a
        batch preprocess side by side instead of one after another inside `predict_batch`. `predict_batch` also
        takes inputs that were not preprocessed (a Ray Serve replica batches them as they arrive).
        """
        return inputs

    def batch_key(self, inputs: InputsT) -> Hashable | None:
        """Requests with equal keys may run as one batch (`predict_batch`); None: this one runs alone."""
        return None

    def predict_batch(self, bundles: Mapping[str, ModelBundle], batch: Sequence[InputsT]) -> list[Any]:
        """Predict several requests that share a batch key; override where one pass can serve them all."""
        return [self.predict(bundles, inputs) for inputs in batch]

    @abstractmethod
    def format(self, output: Any, inputs: InputsT) -> dict[str, Any]:
        """Plain JSON-able result for the UI and the API."""

    def compare_view(self, result: Mapping[str, Any]) -> Comparable | None:
        """The headline of a formatted result for compare mode; None: the task has no compare mode."""
        return None

    def gpu_seconds(self, inputs: InputsT) -> float:
        """A generous estimate of the GPU seconds one `predict` call needs, for ZeroGPU's scheduler.

        ZeroGPU aborts a call that runs past it, and queues shorter requests sooner: overrides scale it with
        the work in `inputs` (audio seconds, beams, labels).
        """
        return DEFAULT_GPU_SECONDS


def image_pixels(bundle: ModelBundle, images: Sequence[Image.Image]) -> np.ndarray:
    """The processor's pixel values for `images` (what an image task's `preprocess` keeps): a numpy array, plain
    data that crosses into a ZeroGPU worker by pickle like the image itself. Large images are reduced first."""
    return bundle.processor(images=[reduce_for(bundle.processor, image) for image in images],
                            return_tensors="np").pixel_values


def stacked_pixels(bundle: ModelBundle, batch: Sequence[Any]) -> torch.Tensor:
    """The pixel values of a batch of inputs with `image` and `pixel_values`: those `preprocess` made, stacked, or
    for inputs not preprocessed (a Ray replica's) the processor's for all the images at once."""
    if all(inputs.pixel_values is not None for inputs in batch):
        return torch.from_numpy(np.concatenate([inputs.pixel_values for inputs in batch]))
    return torch.from_numpy(image_pixels(bundle, [inputs.image for inputs in batch]))


def clean_text(value: Any, *, what: Message | str, max_chars: int, required: bool = True) -> str:
    """Strip a text field and check its length; `what` names it in the error (`Message("error.field.question")`)."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if required and not text:
        raise InputError("error.text.empty", what=what)
    if len(text) > max_chars:
        raise InputError("error.text.too_long", what=what, length=len(text), limit=max_chars)
    return text
