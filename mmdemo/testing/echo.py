"""A throwaway task for tests that prove what adding a task takes: it needs no model and echoes its text.

It batches (requests that arrive together share one `predict_batch`), so it exercises the batcher and Serve's
request batching like a real task, without loading anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmdemo.config import Settings
from mmdemo.i18n import Message
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import ModelSpec, Task, clean_text


@dataclass(frozen=True)
class EchoInputs:
    text: str


class EchoTask(Task[EchoInputs]):
    name = "echo"
    title = "Echo"
    description = "Says back what you type, shouted."
    models = (ModelSpec("mmdemo/echo", note="no weights"),)
    architectures = frozenset()

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> EchoInputs:
        return EchoInputs(clean_text(raw.get("text"), what=Message("error.field.text"),
                                     max_chars=settings.max_text_chars))

    def models_needed(self, inputs: EchoInputs) -> Mapping[str, ModelSpec]:
        return {}

    def batch_key(self, inputs: EchoInputs) -> Hashable | None:
        return "echo"

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: EchoInputs) -> str:
        return inputs.text.upper()

    def predict_batch(self, bundles: Mapping[str, ModelBundle], batch: Sequence[EchoInputs]) -> list[str]:
        return [self.predict(bundles, inputs) for inputs in batch]

    def format(self, output: str, inputs: EchoInputs) -> dict[str, Any]:
        return {"text": inputs.text, "echo": output}

    def gpu_seconds(self, inputs: EchoInputs) -> float:
        return 1.0
