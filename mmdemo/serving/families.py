"""Which deployment serves which task, and the multiplexed model id that names a request's models.

A family is one deployment: the tasks whose models it loads, as the registered tasks declare it. A request's multiplexed
model id is its models by role, so Serve routes it to a replica that already holds them: one checkpoint (`id` or
`id@revision`) for the single-model tasks, the whole set (`image=...;speech=...;text=...`) for sentiment, whose replica
loads it together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mmdemo import registry
from mmdemo.errors import InputError
from mmdemo.tasks.base import ModelSpec

SINGLE_ROLE = "model"  # the role of a single-model task's checkpoint (Task.models_needed)


@dataclass(frozen=True)
class Family:
    """One deployment: its name (also its Serve application's) and the tasks it serves."""

    name: str
    tasks: tuple[str, ...]


def families() -> dict[str, Family]:
    """Every registered task's family (`Task.serve_family`, else a family of its own named after the task), in
    registration order."""
    import mmdemo.tasks  # noqa: F401  (registers the built-in tasks)

    grouped: dict[str, list[str]] = {}
    for name in registry.names():
        grouped.setdefault(registry.get(name).serve_family or name, []).append(name)
    return {family: Family(family, tuple(tasks)) for family, tasks in grouped.items()}


def family_for(task_name: str) -> Family:
    """The family whose deployment runs `task_name`."""
    every = families()
    for family in every.values():
        if task_name in family.tasks:
            return family
    raise KeyError(f"No Ray Serve deployment serves the task {task_name!r}: families are "
                   + ", ".join(f"{f.name} ({', '.join(f.tasks)})" for f in every.values()))


def get_family(name: str) -> Family:
    every = families()
    try:
        return every[name]
    except KeyError:
        raise KeyError(f"Unknown family {name!r}: choose one of {', '.join(every)}") from None


def _checkpoint(spec: ModelSpec) -> str:
    return f"{spec.id}@{spec.revision}" if spec.revision else spec.id


def multiplexed_model_id(specs: Mapping[str, ModelSpec]) -> str:
    """The id Serve routes and caches by: `id[@revision]` for one model, `role=id[@revision];...` for a set."""
    for spec in specs.values():
        if any(mark in spec.id + (spec.revision or "") for mark in "=;@"):
            raise InputError("error.serving.bad_model_id", model=spec.id)
    if set(specs) == {SINGLE_ROLE}:
        return _checkpoint(specs[SINGLE_ROLE])
    if not specs:
        return "(none)"  # sentiment with VADER alone: no checkpoint, still one (empty) model set
    return ";".join(f"{role}={_checkpoint(spec)}" for role, spec in sorted(specs.items()))


def parse_model_id(model_id: str) -> dict[str, ModelSpec]:
    """The role -> spec mapping `multiplexed_model_id` made."""
    def spec(text: str) -> ModelSpec:
        name, _, revision = text.partition("@")
        return ModelSpec(name, revision or None)

    if model_id == "(none)":
        return {}
    if "=" not in model_id:
        return {SINGLE_ROLE: spec(model_id)}
    return {role: spec(text) for role, text in (part.split("=", 1) for part in model_id.split(";"))}
