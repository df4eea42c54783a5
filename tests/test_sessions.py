"""LazySessionState: the same session contents as Gradio's SessionState, built when read rather than up front."""

from __future__ import annotations

import copy
import json

import gradio as gr
import gradio.route_utils
import gradio.state_holder
import pytest

import mmdemo.tasks  # noqa: F401
from mmdemo.ui import build_demo
from mmdemo.ui.gradio_patches.sessions import GRADIO_SESSION_STATE, LazySessionState


@pytest.fixture(scope="module")
def demo(tiny_runtime):
    return build_demo(tiny_runtime())


def configs(session) -> list[dict]:
    """The session's component configs as plain data (a translated text is Gradio's I18nData, which compares by
    identity: it is compared as the marker it is sent as)."""
    return json.loads(json.dumps(copy.deepcopy(list(session.components)), default=str))


def test_building_the_app_makes_gradio_start_sessions_lazily(demo):
    assert gradio.state_holder.SessionState is LazySessionState
    assert gradio.route_utils.SessionState is LazySessionState  # calls without a session hash
    assert GRADIO_SESSION_STATE is not LazySessionState and GRADIO_SESSION_STATE.__name__ == "SessionState"


def test_a_new_session_builds_no_config_and_reads_the_same_as_gradios(demo):
    lazy = LazySessionState(demo)
    assert lazy.config_values == {}
    eager = GRADIO_SESSION_STATE(demo)
    assert len(eager.config_values) > 100  # every block of the app
    assert configs(lazy) == configs(eager)
    assert list(lazy.config_values) == list(eager.config_values)  # same order: deep links restore in it


def test_updates_and_values_land_in_the_config_as_in_gradios(demo):
    textboxes = [k for k, block in demo.blocks.items() if isinstance(block, gr.Textbox)]
    updated, valued = textboxes[0], textboxes[1]
    sessions = [LazySessionState(demo), GRADIO_SESSION_STATE(demo)]
    for session in sessions:
        block = demo.blocks[updated]  # what an event returning gr.update(label="Renamed") does to a session:
        session[updated] = block.__class__(**{**block.constructor_args, "label": "Renamed", "render": False})
        session._update_config(updated)
        session._update_value_in_config(valued, "typed by the visitor")
    lazy, eager = sessions
    assert lazy.config_values[updated] == eager.config_values[updated]
    assert lazy.config_values[updated]["props"]["label"] == "Renamed"
    assert lazy.config_values[valued]["props"]["value"] == "typed by the visitor"
    assert len(lazy.config_values) == 2  # nothing else built yet
    assert configs(lazy) == configs(eager)
