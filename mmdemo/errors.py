"""The project's error types: user-facing problems carry one actionable line."""


class InputError(ValueError):
    """Something the visitor gave cannot be used; the message is shown to them as-is."""


class ModelUnavailableError(RuntimeError):
    """A model cannot be found or loaded; the message names the model and how to provide it."""


class ModelTooLargeError(ModelUnavailableError):
    """One model alone does not fit the memory budget."""


class BusyError(RuntimeError):
    """The app cannot take this request now (memory held by running requests, full queue)."""
