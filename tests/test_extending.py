"""What adding a task takes: a task module, a tab module and one registration line each, and nothing else.

A throwaway echo task (mmdemo.testing.echo) with a tab made here is registered, then served through the API of the
in-process app; test_ray.py serves the same task through the Ray front end.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pytest
from gradio_client import Client

from mmdemo import registry
from mmdemo.testing.echo import EchoTask
from mmdemo.ui import build_demo
from mmdemo.ui.common import TabParts, provenance_line, result_json, wire
from mmdemo.ui.tabs import TABS, register_tab, unregister_tab


def render(result: dict[str, Any] | None) -> tuple[str, str]:
    return (result["echo"], provenance_line(result)) if result else ("", "")


def build_echo_tab(runtime) -> TabParts:
    text = gr.Textbox(label="Text")
    run = gr.Button("Echo", variant="primary")
    shown, provenance = gr.Markdown(), gr.Markdown()
    result = result_json()
    return wire(runtime, "echo", run, {"text": text}, result, render, [shown, provenance], submit=[text])


@pytest.fixture
def echo_registered():
    registry.register(EchoTask())
    register_tab("echo", build_echo_tab)
    try:
        yield
    finally:
        registry.unregister("echo")
        unregister_tab("echo")
    assert "echo" not in registry.names() and "echo" not in TABS


def test_a_registered_task_with_its_tab_is_served_through_the_api(echo_registered, tiny_runtime, launched):
    demo = build_demo(tiny_runtime())
    client = Client(launched(demo), verbose=False)
    result = client.predict("hello there", api_name="/echo")
    assert result["echo"] == "HELLO THERE" and result["text"] == "hello there"
    assert result["provenance"]["models"] == {} and result["provenance"]["batch_size"] >= 1
    tabs = [block["props"].get("elem_id") for block in demo.config["components"] if block.get("type") == "tabitem"]
    assert "echo-tab" in tabs
    with pytest.raises(Exception, match="Text is empty"):
        client.predict("   ", api_name="/echo")
    assert client.predict("again", api_name="/echo")["echo"] == "AGAIN"  # the server keeps serving


def test_without_the_registration_the_task_is_unknown(tiny_runtime):
    with pytest.raises(KeyError, match="Unknown task 'echo'"):
        tiny_runtime().run("echo", {"text": "hi"})
