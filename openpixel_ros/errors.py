"""Errors shared across layers, defined at the bottom so any module can raise them without importing above it."""


class EngineError(RuntimeError):
    """A model could not be loaded or run. The message is one line, fit for a log."""
