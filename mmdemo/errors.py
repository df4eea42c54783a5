"""The project's error types: user-facing problems carry one actionable line.

A visitor's error is raised with a catalogue key and its parameters, e.g.
`InputError("error.audio.too_long", limit="10 minutes")`: the key is the error's stable code, `str(error)` is the
English line the API returns, and the UI shows the same error in the visitor's language (`mmdemo.i18n`).
"""

from __future__ import annotations

from typing import Any

from mmdemo.i18n import Message, has


class VisitorError(Exception):
    """A problem whose message is meant for the visitor, shown as-is in the UI and the API (one actionable line).

    Args:
        key: the catalogue key of the message (its code). A text that is not a key is taken as the English
            message itself, with the code "error.untranslated" (tests keep the app's own errors keyed).
        params: the message's parameters; a `Message` among them is rendered in the same language.
    """

    def __init__(self, key: str, **params: Any) -> None:
        self.message = Message(key, params) if has(key) else Message("error.untranslated", {"message": key})
        super().__init__(str(self.message))

    @property
    def code(self) -> str:
        """The stable code of the error: its catalogue key."""
        return self.message.key

    def render(self, locale: str | None = None) -> str:
        """The message in `locale` (default: the current request's language)."""
        return self.message.render(locale)

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Ray replicas, ZeroGPU workers): keep the key, not only the English line.
        return _rebuild, (type(self), self.message)


def _rebuild(cls: type[VisitorError], message: Message) -> VisitorError:
    error = cls.__new__(cls)
    error.message = message
    Exception.__init__(error, str(message))
    return error


class InputError(VisitorError, ValueError):
    """Something the visitor gave cannot be used."""


class ModelUnavailableError(VisitorError, RuntimeError):
    """A model cannot be found or loaded; the message names the model and how to provide it."""


class ModelTooLargeError(ModelUnavailableError):
    """One model alone does not fit the memory budget."""


class BusyError(VisitorError, RuntimeError):
    """The app cannot take this request now (memory held by running requests, full queue)."""
