"""The Gradio patches apply on the Gradio they were written for, and on any other the app runs on Gradio's own code."""

from __future__ import annotations

import logging

import gradio as gr
import gradio.blocks
import gradio.queueing
import gradio.route_utils
import gradio.state_holder
import pytest
from gradio_client import Client

import mmdemo.tasks  # noqa: F401
from mmdemo.ui import build_demo, gradio_patches
from mmdemo.ui.gradio_patches.queueing import GRADIO_QUEUE, WakingQueue
from mmdemo.ui.gradio_patches.sessions import GRADIO_SESSION_STATE, LazySessionState

SESSION_MODULES = (gradio.state_holder, gradio.route_utils, gradio.blocks)  # where Gradio names SessionState
OTHER_GRADIO = "6.99.0"  # same major version: gradio_client talks to it as to any Gradio 6


def installed() -> tuple[type, ...]:
    """The queue class and the session classes Gradio builds from now."""
    return (gradio.queueing.Queue, *(module.SessionState for module in SESSION_MODULES))


GRADIOS_OWN = (GRADIO_QUEUE,) + (GRADIO_SESSION_STATE,) * len(SESSION_MODULES)
PATCHED = (WakingQueue,) + (LazySessionState,) * len(SESSION_MODULES)


@pytest.fixture(autouse=True)
def restore_gradio():
    """Each test starts on Gradio's own classes; afterwards the classes are as before, for other test modules."""
    before = installed()
    gradio_patches.uninstall()
    yield
    gradio.queueing.Queue = before[0]
    for module, session_class in zip(SESSION_MODULES, before[1:]):
        module.SessionState = session_class


def echo_app() -> gr.Blocks:
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(str.upper, box, box, api_name="shout")
    return demo.queue()


def test_on_the_patched_gradio_install_replaces_queue_and_sessions_and_uninstall_puts_them_back():
    assert gr.__version__ == gradio_patches.PATCHED_GRADIO, (
        f"Gradio {gr.__version__} is installed: compare the patches with it, then update PATCHED_GRADIO")
    assert installed() == GRADIOS_OWN
    assert gradio_patches.install() is True
    assert installed() == PATCHED
    assert type(echo_app()._queue) is WakingQueue
    assert gradio_patches.install() is True and installed() == PATCHED  # idempotent
    gradio_patches.uninstall()
    assert installed() == GRADIOS_OWN
    assert type(echo_app()._queue) is GRADIO_QUEUE


def test_on_another_gradio_install_changes_nothing_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(gr, "__version__", OTHER_GRADIO)
    with caplog.at_level(logging.WARNING):
        assert gradio_patches.install() is False
    assert installed() == GRADIOS_OWN
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"Gradio {OTHER_GRADIO} is not the version mmdemo's patches were written for (6.31.0): "
        "running on Gradio's own queue and sessions"]


def test_on_another_gradio_the_app_runs_on_gradios_own_queue_and_sessions(monkeypatch, caplog, tiny_runtime,
                                                                         launched):
    monkeypatch.setattr(gr, "__version__", OTHER_GRADIO)
    with caplog.at_level(logging.WARNING, logger="mmdemo.ui.gradio_patches"):
        demo = build_demo(tiny_runtime())
    assert len([r for r in caplog.records if r.name == "mmdemo.ui.gradio_patches"]) == 1
    assert type(demo._queue) is GRADIO_QUEUE and installed() == GRADIOS_OWN
    client = Client(launched(demo), verbose=False)
    report = client.predict(api_name="/models")  # the Models panel's report: answers without loading a model
    assert report["entries"] == [] and report["device"] == "cpu"
    sessions = list(demo.state_holder.session_data.values())
    assert sessions and all(type(session) is GRADIO_SESSION_STATE for session in sessions)

    echo = echo_app()
    client = Client(launched(echo), verbose=False)
    assert client.predict("hello", api_name="/shout") == "HELLO"
    assert type(echo._queue) is GRADIO_QUEUE
