"""What the tabs tell a visitor about language, and the run-time texts they show in the visitor's language.

- `has_cjk` (a pure function): whether a text has Chinese, Japanese or Korean in it. CLIP and SigLIP learned from
  English captions, so the zero-shot and sentiment tabs hint that English labels work best (`english_hint`,
  `watch_for_cjk`); what the visitor typed is never translated behind their back.
- `translated_note`: a result's English note (part of the API) in the request's language, when the result's fields
  rebuild it exactly; otherwise the English note as it is.
- `localized_table`: rows under headers in the request's language. A gr.Dataframe shows no translation markers in
  its headers, so they are written at run time: by the render functions, and when the page loads
  (`relabel_on_load`).

The texts come from the catalogues in the current language (`mmdemo.i18n`): the request's inside a `localized`
handler, English outside one (a direct call, a test).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd
from gradio.context import get_blocks_context

from mmdemo import i18n
from mmdemo.i18n import DEFAULT_LOCALE
from mmdemo.ui.i18n import localized

# Han ideographs (with extension A, the compatibility block and the supplementary planes' extensions), kana and
# Hangul: letters of a CJK language. Full-width punctuation alone ("，") is not enough to call a label Chinese.
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)


def has_cjk(*texts: str | None) -> bool:
    """Whether any of `texts` has a Chinese, Japanese or Korean letter in it (None and "" have none)."""
    return any(_CJK.search(text) for text in texts if text)


def translated_note(note: str, key: str, /, **params: Any) -> str:
    """The catalogue's text of `key` in the current language, if its English is exactly `note`; else `note`.

    A result's note is English (it belongs to the API). The UI rebuilds it from the result's fields (`params`); where
    the note says more than those fields tell (a truncation the result does not record), the English note is shown
    rather than a translation that would leave it out.
    """
    if i18n.text(key, DEFAULT_LOCALE, **params) == note:
        return i18n.text(key, **params)
    return note


def localized_table(rows: Sequence[Sequence[Any]], header_keys: Sequence[str]) -> pd.DataFrame:
    """`rows` under the headers of `header_keys`, in the current language."""
    return pd.DataFrame([list(row) for row in rows], columns=[i18n.text(key) for key in header_keys])


def relabel_on_load(table: gr.Dataframe, header_keys: Sequence[str]) -> None:
    """When the page loads, write `table`'s headers in the visitor's language (its rows kept). Call inside Blocks."""
    def relabel(value: pd.DataFrame | None) -> pd.DataFrame:
        return localized_table(value.values.tolist() if value is not None else [], header_keys)

    # The page's load event itself: a change trigger on the table would fire again on the relabelled value.
    get_blocks_context().root_block.load(localized(relabel), inputs=table, outputs=table, api_visibility="private",
                                         queue=False, show_progress="hidden")


def english_hint(text: Any, elem_id: str) -> gr.Markdown:
    """A hidden line (`text`, a `t(...)`) under the input it is built after; `watch_for_cjk` shows it."""
    return gr.Markdown(text, visible=False, elem_id=elem_id, elem_classes="mm-lead")


def watch_for_cjk(hint: gr.Markdown, boxes: Sequence[gr.Textbox]) -> None:
    """Show `hint` while any of `boxes` has Chinese, Japanese or Korean in it, as the visitor types."""
    def show(texts: dict[gr.Textbox, str | None]) -> gr.Markdown:
        return gr.Markdown(visible=has_cjk(*texts.values()))

    # Inputs as a set: the handler gets one dict of every box's text (`localized` wraps fixed parameters only).
    gr.on([box.change for box in boxes], localized(show), inputs=set(boxes), outputs=hint,
          api_visibility="private", queue=False, show_progress="hidden")
