"""Gradio sessions that build a component's config when it is first read, not every config when they start.

Gradio 6 gives each visitor's session, and every API call made without a session hash (curl, fetch, any plain HTTP
client), a `SessionState` that renders the config of every block of the app up front, over a hundred here: CPU time
and memory per session (`python -m benchmarks.sessions` measures both), spent on the server's event loop, for
configs that Gradio reads only for blocks an event updated and when it restores a deep link. `LazySessionState`
keeps the same contents and builds each config on first read; `install()` makes Gradio use it. Apply it through
`mmdemo.ui.gradio_patches.install()`, which checks the Gradio version first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from copy import copy
from typing import Any

import gradio.blocks
import gradio.route_utils
import gradio.state_holder

GRADIO_SESSION_STATE = gradio.state_holder.SessionState  # Gradio's own class, before install() replaces the name


class LazySessionState(GRADIO_SESSION_STATE):
    """Gradio's `SessionState`, with `config_values` filled on demand.

    Gradio itself builds a missing entry from the session's block when an event updates it or sets its value;
    `components` (deep links) fills in the rest, in Gradio's order.
    """

    def __init__(self, blocks: gradio.Blocks) -> None:  # the parent's __init__, minus the configs
        self.blocks_config = copy(blocks.default_config)
        # The blocks as they are when the session starts: an unread config is built from these, as Gradio would
        # have built it then.
        self._initial = {k: v for k, v in self.blocks_config.blocks.items() if k in blocks.blocks}
        self.config_values: dict[int, Any] = {}
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, Any] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    @property
    def components(self) -> Iterator[dict]:
        built = self.config_values
        self.config_values = {k: built[k] if k in built else self.blocks_config.config_for_block(k, [], v)
                              for k, v in self._initial.items()}
        self.config_values.update(built)  # blocks added later (re-renders) keep their place after these
        self._initial = {}
        return super().components


def install(session_class: type = LazySessionState) -> None:
    """Make every Gradio app in this process start its sessions with `session_class` (idempotent)."""
    for module in (gradio.state_holder, gradio.route_utils, gradio.blocks):
        module.SessionState = session_class


def uninstall() -> None:
    """Make Gradio start its sessions with its own class again."""
    install(GRADIO_SESSION_STATE)
