"""The tab of each task: task name -> a function that builds the tab's components under `gr.Tab` and returns its
`TabParts` (what other tabs may read or fill).

A new task's tab: one module here plus one `register_tab` line below. A registered task with no tab is served
through the runtime (and the Ray backend) only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mmdemo.ui.tabs import captioning, sentiment, speech, vqa, zero_shot

if TYPE_CHECKING:
    from mmdemo.runtime import Runtime
    from mmdemo.ui.common import TabParts

TabBuilder = Callable[["Runtime"], "TabParts"]
TABS: dict[str, TabBuilder] = {}


def register_tab(task_name: str, build: TabBuilder) -> TabBuilder:
    """Build `task_name`'s tab with `build(runtime)`; a second builder for the same task is refused."""
    if task_name in TABS:
        raise ValueError(f"The task {task_name!r} already has a tab ({TABS[task_name].__module__})")
    TABS[task_name] = build
    return build


def unregister_tab(task_name: str) -> None:
    """Forget a task's tab (a test's throwaway task)."""
    TABS.pop(task_name, None)


register_tab("vqa", vqa.build)
register_tab("captioning", captioning.build)
register_tab("zero_shot", zero_shot.build)
register_tab("speech", speech.build)
register_tab("sentiment", sentiment.build)
