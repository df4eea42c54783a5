"""Chaining between tabs: which buttons the page has, what each copies where (in the browser), and the caption noun
rule behind "Suggest labels". The browser tests (tests/test_explain_browser.py) click them."""

from __future__ import annotations

import gradio as gr
import pytest

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.ui import build_demo, chaining


@pytest.fixture(scope="module")
def config(tiny_runtime) -> dict:
    return build_demo(tiny_runtime()).get_config_file()


def _ids(config: dict) -> dict[str, int]:
    return {c["props"]["elem_id"]: c["id"] for c in config["components"] if c["props"].get("elem_id")}


def _clicks(config: dict, button: int) -> list[dict]:
    return [d for d in config["dependencies"] if [button, "click"] in [list(t) for t in d["targets"]]]


def _then(config: dict, dependency: dict) -> list[dict]:
    return [d for d in config["dependencies"] if d.get("trigger_after") == dependency["id"]]


@pytest.mark.parametrize(("button", "source", "target", "tab"), [
    ("send-captioning-to-vqa", "captioning-image", "vqa-image", "vqa"),
    ("send-vqa-to-zero_shot", "vqa-image", "zero_shot-image", "zero_shot"),
    ("send-zero_shot-to-sentiment", "zero_shot-image", "sentiment-image", "sentiment"),
    ("captioning-ask", "captioning-image", "vqa-image", "vqa"),
    ("speech-to-sentiment", "speech-transcript", "sentiment-text", "sentiment"),
])
def test_buttons_copy_in_the_browser_then_switch_tab(config: dict, button: str, source: str, target: str,
                                                      tab: str) -> None:
    ids = _ids(config)
    (click,) = _clicks(config, ids[button])
    assert click["js"] == chaining.COPY and not click["backend_fn"]  # no server round trip for the value
    assert click["inputs"] == [ids[source]] and click["outputs"] == [ids[target]]
    (switch,) = _then(config, click)
    tabs = next(c["id"] for c in config["components"] if c["type"] == "tabs")
    assert switch["outputs"] == [tabs]


def test_every_image_tab_sends_to_every_other(config: dict) -> None:
    ids = _ids(config)
    for source in chaining.IMAGE_TABS:
        for target in chaining.IMAGE_TABS:
            assert (f"send-{source}-to-{target}" in ids) == (source != target)


def test_tab_switch_selects_the_target() -> None:
    assert chaining._select("vqa")().selected == "vqa"


@pytest.mark.parametrize(("caption", "nouns"), [
    ("a man riding a horse on a beach", ["man", "horse", "beach"]),
    ("there is a cat that is sitting on a couch", ["cat", "couch"]),
    ("arafed view of a plate of food with a fork", ["plate", "food", "fork"]),
    ("a close up of a cup of coffee", ["cup", "coffee"]),
    ("two dogs playing in the snow", ["dogs", "snow"]),
    ("a dog and a dog", ["dog"]),
    ("a sleeping cat next to a building", ["cat", "building"]),
    ("", []),
])
def test_caption_nouns(caption: str, nouns: list[str]) -> None:
    assert chaining.caption_nouns(caption) == nouns


def test_suggest_labels_needs_a_caption() -> None:
    assert chaining.suggest_labels({"caption": "a red bus parked next to a building"}) == "bus, building"
    with pytest.raises(gr.Error, match="Caption an image first"):
        chaining.suggest_labels(None)


def _is_share_link(component: dict) -> bool:
    """A gr.DeepLinkButton (a Button with Gradio's share-link id)."""
    return str(component["props"].get("elem_id", "")).startswith("gradio-share-link-button")


def test_no_share_link_off_a_space(config: dict) -> None:
    assert not any(_is_share_link(c) for c in config["components"])


def test_share_links_on_a_space(tiny_runtime, monkeypatch) -> None:
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/mmdemo")
    config = build_demo(tiny_runtime()).get_config_file()
    links = [c for c in config["components"] if _is_share_link(c)]
    assert len(links) == 5  # one per task tab

