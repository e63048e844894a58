"""Errors the command line reports as a one-line message instead of a traceback."""


class TinylocError(Exception):
    """Base class: a problem with the user's input or environment, explained in the message."""


class DataError(TinylocError):
    """Bad or missing input data. The message names the file, row, column or value."""
