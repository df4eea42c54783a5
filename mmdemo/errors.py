"""The project's error types: user-facing problems carry one actionable line."""


class VisitorError(Exception):
    """A problem whose message is meant for the visitor, shown as-is in the UI and the API (one actionable line)."""


class InputError(VisitorError, ValueError):
    """Something the visitor gave cannot be used."""


class ModelUnavailableError(VisitorError, RuntimeError):
    """A model cannot be found or loaded; the message names the model and how to provide it."""


class ModelTooLargeError(ModelUnavailableError):
    """One model alone does not fit the memory budget."""


class BusyError(VisitorError, RuntimeError):
    """The app cannot take this request now (memory held by running requests, full queue)."""
