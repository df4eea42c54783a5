"""TASKS: task name -> Task. Registering twice or asking for an unknown name fails loudly."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tasks import the registry to register themselves
    from mmdemo.tasks.base import Task

TASKS: dict[str, Task] = {}


class UnknownTaskError(KeyError):
    """No task has that name; the message lists the ones that do."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(task: Task) -> Task:
    """Add a task under its name; a second task with the same name is refused."""
    if task.name in TASKS:
        raise ValueError(f"A task named {task.name!r} is already registered ({type(TASKS[task.name]).__name__})")
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    """The task called `name`; the error lists the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        choices = ", ".join(sorted(TASKS)) or "(none registered)"
        raise UnknownTaskError(f"Unknown task {name!r}: choose one of {choices}") from None


def unregister(name: str) -> None:
    """Forget a task (a test's throwaway task); unknown names are ignored."""
    TASKS.pop(name, None)


def names() -> list[str]:
    return list(TASKS)
