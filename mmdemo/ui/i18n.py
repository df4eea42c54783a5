"""The page in the visitor's language: Gradio's i18n for what the page is built with, the request's language for what
the handlers write, and the language switch.

Two kinds of text reach the page:
- Built once, when the page is built (labels, buttons, hints): `t(key)` returns Gradio's translation marker, and the
  browser shows the text of its language from `I18N` (passed to `launch(i18n=...)`).
- Written by a handler (a result's note, an error): `t(key)` inside a handler wrapped with `localized` returns the text
  in the request's language, which the page tells the server with the `mmdemo-lang` cookie. A client without that
  cookie, e.g. `gradio_client`, gets English: the API never changes with the visitor's language.

Which language the page opens in, and the switch: `mmdemo.ui.page_language`.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import json
import logging
import typing
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo import i18n
from mmdemo.errors import VisitorError
from mmdemo.i18n import DEFAULT_LOCALE, LOCALES, NATIVE_NAMES, Message
from mmdemo.ui.page_language import COOKIE

log = logging.getLogger(__name__)

def _translations() -> dict[str, dict[str, str]]:
    return {locale: dict(i18n.catalogue(locale)) for locale in LOCALES}


# Gradio's catalogue: every key in every language, plus the texts `t` formats with parameters at build time.
I18N = gr.I18n(**_translations())


def t(key: str, /, **params: Any) -> Any:
    """The text of `key` for the visitor: inside a `localized` handler, the string in the request's language;
    while the page is built, Gradio's marker (the browser shows its language's text).

    A marker cannot carry parameters, so a text built with them gets a key of its own in `I18N`, one per distinct
    parameters, already formatted in each language.
    """
    if _in_request():
        return i18n.text(key, **params)
    if not params:
        return I18N(key)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    derived = f"{key}#{digest}"
    for locale, table in I18N.translations.items():
        table[derived] = i18n.text(key, locale, **params)
    return I18N(derived)


def message(key: str, **params: Any) -> Message:
    """A text to render later in the request's language (e.g. a parameter of another text)."""
    return Message(key, params)


_active: contextvars.ContextVar[bool] = contextvars.ContextVar("mmdemo_localized", default=False)


def _in_request() -> bool:
    return _active.get()


def locale_of(request: gr.Request | None) -> str:
    """The page's language from the request's cookie; English for a client that sends none (the API)."""
    if request is None:
        return DEFAULT_LOCALE
    try:
        cookies = dict(request.cookies)
    except AttributeError:
        return DEFAULT_LOCALE
    return i18n.supported(cookies.get(COOKIE)) or DEFAULT_LOCALE


def error(failure: VisitorError) -> gr.Error:
    """The visitor's error as Gradio shows it: one line in the request's language."""
    return gr.Error(failure.render(), title=i18n.text("ui.error"), print_exception=False)


def localized(fn: Callable[..., Any] | None = None, *, what: str | Message | None = None) -> Any:
    """Run a Gradio handler in its request's language, with the app's errors as one line in that language.

    The handler gets no new parameter: the wrapper adds a `gr.Request` after the handler's positional ones (Gradio
    fills it), sets the language for `t`, turns a `VisitorError` into `gr.Error` in that language, and any other
    exception into a logged one-line "failed unexpectedly" naming `what` (the handler's name by default).
    Generator handlers (streams) keep the language for every step.
    """
    if fn is None:
        return functools.partial(localized, what=what)
    signature = inspect.signature(fn)
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    others = [p for p in signature.parameters.values() if p not in positional]
    count = len(positional)
    request_parameter = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                          annotation=gr.Request)
    label = what or fn.__name__

    def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
        request = kwargs.pop("request", None)
        if len(args) > count:
            request, args = args[count], args[:count] + args[count + 1:]
        return args, locale_of(request)

    def failed(e: Exception) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, VisitorError):
            return error(e)
        log.exception("%s failed", fn.__name__)
        name = label.render() if isinstance(label, Message) else label
        return gr.Error(i18n.text("error.unexpected", what=name, error=type(e).__name__), title=i18n.text("ui.error"),
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            args, locale = split(args, kwargs)
            steps = fn(*args, **kwargs)
            while True:
                with i18n.use_locale(locale), _activate():
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                    except Exception as e:
                        raise failed(e) from e
                yield item

        wrapper = stream
    else:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            args, locale = split(args, kwargs)
            with i18n.use_locale(locale), _activate():
                try:
                    return fn(*args, **kwargs)
                except Exception as e:
                    raise failed(e) from e

        wrapper = call
    # Gradio fills a positional parameter annotated gr.Request (it reads the signature and the type hints).
    wrapper.__signature__ = signature.replace(parameters=[*positional, request_parameter, *others])  # type: ignore[attr-defined]
    # Resolved here, in the handler's module (its annotations may be strings): Gradio finds gr.EventData by them too.
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    wrapper.__annotations__ = {**hints, "request": gr.Request}
    del wrapper.__wrapped__  # inspect and typing must read the wrapper's signature and hints, not the handler's
    return wrapper


class _activate:
    """Inside: `t` returns strings (the request's language) rather than markers."""

    def __enter__(self) -> None:
        self._token = _active.set(True)

    def __exit__(self, *exc: Any) -> None:
        _active.reset(self._token)


def language_switch() -> gr.Radio:
    """English | 中文 in the page's top right corner: reloads the page in the chosen language and remembers it."""
    switch = gr.Radio([(NATIVE_NAMES[locale], locale) for locale in LOCALES], value=None, label=t("app.language"),
                      show_label=False, container=False, elem_id="mm-language", min_width=0)
    # `input` fires only for the visitor's own click, not when the page load below shows the current language.
    switch.input(None, inputs=switch, js="(value) => window.mmdemoSetLanguage(value)")
    gr.on(triggers=None, fn=None, outputs=switch, js="() => window.mmdemoLanguage || null")
    return switch
