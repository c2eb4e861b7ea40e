"""Errors raised by the model runtime."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be located or loaded; carries the model name and the cause."""

    def __init__(self, model: str, cause: str) -> None:
        super().__init__(f"cannot load sentiment model {model!r}: {cause}")
        self.model = model
        self.cause = cause
