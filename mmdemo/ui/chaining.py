"""Moving one tab's input or result to another tab, in the browser: an image to the other image tabs, the speech
transcript to sentiment, a caption's image to VQA ("Ask about it") and its nouns to zero-shot ("Suggest labels").

The value is copied by a JavaScript step from one component to the other (the file the visitor uploaded is already
on the server: nothing is uploaded again), then the page switches to the target tab. `link` adds the buttons to the
built tabs from their `TabParts`, so a tab builder knows nothing of the others; a task without a tab is skipped.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr
from gradio import utils as gradio_utils

from mmdemo import i18n, registry
from mmdemo.errors import InputError
from mmdemo.ui.common import TabParts
from mmdemo.ui.i18n import localized, message, t

IMAGE_TABS = ("vqa", "captioning", "zero_shot", "sentiment")  # tabs with an "image" input, in button order
# Catalogue keys: a target tab's button is chaining.to.<task>; the Share button names the task with
# chaining.task.<task> where there is one (else the task's own title).
COPY = "(value) => value"  # the browser-side step: the source's value, as it is, into the target
MAX_SUGGESTED_LABELS = 8

# "Suggest labels": no small, maintained, offline English tagger is on PyPI (NLTK's tagger downloads its data at run
# time; spaCy's small English pipeline is published on PyPI only by third parties, and spaCy itself is large), so a
# rule reads the nouns of a caption: a noun phrase starts after a determiner, a preposition or a verb and ends at the
# next such word (an -ing or -ed word after a noun counts as a verb); its last word is its head noun. Captions are
# short and plain ("a man riding a horse on a beach"), which is where such a rule holds.
DETERMINERS = frozenset(
    "a an the one two three four five six seven eight nine ten some several many few his her their its our my your "
    "this these those".split())
BREAKS = frozenset(
    "on in at with of to near under over behind from by for into onto through across beside besides around above "
    "below between inside outside next up down off out against along toward towards while and or but as "
    "is are was were be been being has have had do does that which who whom whose it they he she there here "
    "very while during holding wearing sitting standing looking".split())
META_WORDS = frozenset(  # a caption's words about the picture itself, not what is in it
    "photo photograph photography picture image close view top side front back shot painting drawing "
    "arafed araffe arafe there background foreground".split())


def _verb_like(word: str) -> bool:
    """-ing and -ed words ("riding", "parked") read as verbs after a noun; right after a determiner they are part of
    the phrase ("a sleeping cat", "a building")."""
    return len(word) > 4 and word.endswith(("ing", "ed"))


def caption_nouns(caption: str, limit: int = MAX_SUGGESTED_LABELS) -> list[str]:
    """The head nouns of a caption's noun phrases, in order, without repeats or words about the picture itself."""
    nouns: list[str] = []
    phrase: list[str] = []

    def close() -> None:
        if phrase and phrase[-1] not in META_WORDS and phrase[-1] not in nouns:
            nouns.append(phrase[-1])
        phrase.clear()

    for word in re.findall(r"[a-z][a-z'-]*", caption.lower()):
        if word in DETERMINERS or word in BREAKS or (phrase and _verb_like(word)):
            close()
        else:
            phrase.append(word)
    close()
    return nouns[:limit]


def _column_of(component: gr.components.Component) -> Any:
    """The nearest Column around a component: where a row of buttons fits under it."""
    block = component.parent
    while block is not None and not isinstance(block, gr.Column):
        block = block.parent
    return block if block is not None else component.parent


def _select(tab: str):
    def select() -> gr.Tabs:
        return gr.Tabs(selected=tab)

    return select


def _send(button: gr.Button, source: gr.components.Component, target: gr.components.Component,
          tabs: gr.Tabs, tab: str) -> None:
    """On click: the source's value into the target (in the browser), then the target's tab."""
    button.click(None, inputs=source, outputs=target, js=COPY, api_visibility="private", queue=False).then(
        _select(tab), outputs=tabs, api_visibility="private", queue=False)


@localized(what=message("chaining.suggest"))
def suggest_labels(result: dict[str, Any] | None) -> str:
    """Zero-shot labels from the caption in a captioning result (at least two: zero-shot needs them)."""
    caption = (result or {}).get("caption") or ""
    if not caption:
        raise InputError("error.chaining.no_caption")
    nouns = caption_nouns(caption)
    if len(nouns) < 2:
        gr.Info(i18n.text("chaining.few_nouns", caption=caption))
    return ", ".join(nouns)


def _share_text(task_name: str) -> Any:
    """The Share button's text, naming the task in the visitor's language where the catalogue has its name."""
    key = f"chaining.task.{task_name}"
    return t("chaining.share", task=message(key) if i18n.has(key) else registry.get(task_name).title.lower())


def link(parts: dict[str, TabParts], tabs: gr.Tabs) -> None:
    """Add the buttons that carry inputs and results between the built tabs (call inside the Blocks)."""
    image_tabs = [name for name in IMAGE_TABS if name in parts and "image" in parts[name].inputs]
    for source in image_tabs:
        image = parts[source].inputs["image"]
        with _column_of(image), gr.Row(elem_classes="mm-send-row"):
            gr.Markdown(t("chaining.use_image_in"), elem_classes="mm-send-label")
            for target in image_tabs:
                if target != source:
                    button = gr.Button(t(f"chaining.to.{target}"), size="sm", min_width=60,
                                       elem_id=f"send-{source}-to-{target}")
                    _send(button, image, parts[target].inputs["image"], tabs, target)
    if "speech" in parts and "sentiment" in parts and "transcript" in parts["speech"].outputs:
        transcript = parts["speech"].outputs["transcript"]
        with _column_of(transcript):
            button = gr.Button(t("chaining.to_sentiment"), size="sm", elem_id="speech-to-sentiment")
        _send(button, transcript, parts["sentiment"].inputs["text"], tabs, "sentiment")
    if "captioning" in parts:
        captioning = parts["captioning"]
        with _column_of(captioning.result), gr.Row():
            if "vqa" in parts:
                ask = gr.Button(t("chaining.ask"), size="sm", elem_id="captioning-ask")
                _send(ask, captioning.inputs["image"], parts["vqa"].inputs["image"], tabs, "vqa")
            if "zero_shot" in parts:
                zero_shot = parts["zero_shot"]
                suggest = gr.Button(t("chaining.suggest"), size="sm", elem_id="captioning-suggest-labels")
                suggest.click(None, inputs=captioning.inputs["image"], outputs=zero_shot.inputs["image"], js=COPY,
                              api_visibility="private", queue=False).then(
                    suggest_labels, inputs=captioning.result, outputs=zero_shot.inputs["labels"],
                    api_visibility="private", queue=False).success(
                    _select("zero_shot"), outputs=tabs, api_visibility="private", queue=False)
    if gradio_utils.get_space():
        # On a Space, a link that reopens the page with this session's inputs and results.
        for name, tab_parts in parts.items():
            with _column_of(tab_parts.result):
                gr.DeepLinkButton(_share_text(name), size="sm")
