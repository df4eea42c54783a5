"""MMDEMO_MODEL_ADMIN: the Models panel preloads and unloads only where model admin is on (by default, not on a
Space); where it is off, /preload and /unload answer one line and leave the cache as it is."""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import mmdemo.tasks  # noqa: F401
from mmdemo.config import Settings, model_admin_enabled, settings_from_env
from mmdemo.ui import build_demo

SPACE = {"SPACE_ID": "someone/mmdemo"}
REFUSAL = "Model admin is off on this server: set MMDEMO_MODEL_ADMIN=1 to preload or unload models"
CLIP = "openai/clip-vit-base-patch32"  # the zero-shot tab's default model


@pytest.mark.parametrize(("raw", "mode"), [("1", "on"), ("On", "on"), ("true", "on"), ("YES", "on"), ("0", "off"),
                                           ("off", "off"), ("False", "off"), ("no", "off"), ("auto", "auto"),
                                           (" AUTO ", "auto"), ("", "auto")])
def test_the_variable_reads_auto_or_any_flag(raw, mode):
    assert settings_from_env({"MMDEMO_MODEL_ADMIN": raw}).model_admin == mode


def test_an_unreadable_value_names_the_variable_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"MMDEMO_MODEL_ADMIN='sometimes' is not valid: use auto, 1/0, true/false, "
                                         r"yes/no or on/off$"):
        settings_from_env({"MMDEMO_MODEL_ADMIN": "sometimes"})
    with pytest.raises(ValueError, match="model_admin must be auto, on, off, got '1': fix MMDEMO_MODEL_ADMIN"):
        Settings(model_admin="1")


@pytest.mark.parametrize(("mode", "environ", "enabled"), [
    ("auto", {}, True), ("auto", SPACE, False), ("auto", {"SPACE_ID": " "}, True),
    ("on", SPACE, True), ("off", {}, False), ("off", SPACE, False),
])
def test_auto_is_on_locally_and_off_on_a_space(mode, environ, enabled):
    assert model_admin_enabled(Settings(model_admin=mode), environ) is enabled


def resident(report: dict) -> list[str]:
    return sorted(entry["model"] for entry in report["entries"])


def admin_props(client: Client) -> dict[str, dict]:
    """The props of the Models panel's admin row and of the note saying admin is off, by elem_id (when present)."""
    return {c["props"]["elem_id"]: c["props"] for c in client.config["components"]
            if c.get("props", {}).get("elem_id") in {"models-admin", "models-admin-off"}}


def test_off_on_a_space_the_panel_only_reports_and_the_endpoints_refuse(tiny_runtime, launched, monkeypatch):
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])  # auto, the default: off on a Space
    runtime = tiny_runtime()
    runtime.preload("zero_shot")  # as MMDEMO_PRELOAD would at start
    client = Client(launched(build_demo(runtime)), verbose=False)

    props = admin_props(client)
    assert props["models-admin"]["visible"] is False  # the preload and unload controls
    assert props["models-admin-off"]["value"] == REFUSAL
    before = client.predict(api_name="/models")  # the report still works
    assert resident(before) == [CLIP]
    for args, api_name in (((CLIP,), "/unload"), (("sentiment",), "/preload")):
        with pytest.raises(AppError) as refused:
            client.predict(*args, api_name=api_name)
        assert str(refused.value) == REFUSAL
    after = client.predict(api_name="/models")
    assert resident(after) == [CLIP] and after["misses"] == before["misses"]
    assert after["evictions"] == before["evictions"] == 0


def test_on_the_panel_preloads_and_unloads_even_on_a_space(tiny_runtime, launched, monkeypatch):
    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])
    client = Client(launched(build_demo(tiny_runtime(model_admin="on"))), verbose=False)

    props = admin_props(client)
    assert props["models-admin"]["visible"] is True and "models-admin-off" not in props
    assert resident(client.predict("zero_shot", api_name="/preload")) == [CLIP]
    assert resident(client.predict(CLIP, api_name="/unload")) == []
