"""The app's words in each language: keyed catalogues, one folder per language under `locales/`.

Every string a visitor reads (labels, hints, results' notes, error messages) is a key here, e.g.
`"error.audio.too_long": "Audio is longer than the {limit} limit: trim it"`, written once per language in
`locales/<locale>/*.json` (the files split the keys by area; a key lives in exactly one file). English is the
reference: the API's messages are always English, and a key missing from another language falls back to it (a test
keeps the languages' keys equal).

A `Message` is a key with its parameters, rendered in a language when it is shown. Parameters may be Messages
themselves (a task's name inside an error), rendered in the same language. Task code raises errors with a key and
parameters (`mmdemo.errors`); the UI renders them in the visitor's language (`mmdemo.ui.i18n`). No Gradio here.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

LOCALES = ("en", "zh-CN")  # the languages the UI speaks; the first is the reference and the fallback
DEFAULT_LOCALE = LOCALES[0]
NATIVE_NAMES = {"en": "English", "zh-CN": "中文"}  # each language's name in itself, for the language switch
FOLDER = Path(__file__).resolve().parent / "locales"

_locale: contextvars.ContextVar[str] = contextvars.ContextVar("mmdemo_locale", default=DEFAULT_LOCALE)


@cache
def catalogue(locale: str) -> Mapping[str, str]:
    """Every key of `locale` (all its files merged); a key defined in two files is refused."""
    if locale not in LOCALES:
        raise ValueError(f"Unknown locale {locale!r}: choose one of {', '.join(LOCALES)}")
    keys: dict[str, str] = {}
    for path in sorted((FOLDER / locale).glob("*.json")):
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            if key in keys:
                raise ValueError(f"{locale}: the key {key!r} is defined twice ({path.name} and another file)")
            keys[key] = value
    return keys


def has(key: str) -> bool:
    return key in catalogue(DEFAULT_LOCALE)


def supported(locale: str | None) -> str | None:
    """`locale` if the UI speaks it, else None."""
    return locale if locale in LOCALES else None


def text(key: str, locale: str | None = None, /, **params: Any) -> str:
    """The key's text in `locale` (default: the current one), formatted with `params`.

    A key missing from `locale` falls back to English; a key missing from English is returned as it is (so that a
    forgotten key shows up on the page rather than failing the request; tests keep the catalogues complete).
    """
    locale = locale or _locale.get()
    template = catalogue(locale).get(key) if locale in LOCALES else None
    if template is None:
        template = catalogue(DEFAULT_LOCALE).get(key, key)
    rendered = {name: value.render(locale) if isinstance(value, Message) else value for name, value in params.items()}
    return template.format(**rendered) if rendered else template


@dataclass(frozen=True)
class Message:
    """A catalogue key and its parameters, rendered in a language when shown."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def render(self, locale: str | None = None) -> str:
        return text(self.key, locale, **self.params)

    def __str__(self) -> str:
        return self.render(DEFAULT_LOCALE)


def current_locale() -> str:
    """The language of the request being served (English outside one, and for the API)."""
    return _locale.get()


@contextmanager
def use_locale(locale: str | None) -> Iterator[str]:
    """Render texts in `locale` (English if it is not one the UI speaks) inside the block."""
    chosen = supported(locale) or DEFAULT_LOCALE
    token = _locale.set(chosen)
    try:
        yield chosen
    finally:
        _locale.reset(token)
