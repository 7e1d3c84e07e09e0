"""Errors that reach a user as one clear line instead of a traceback.

The CLI maps `UserError` to exit code 2 and prints its message on stderr; the
app shows it with `st.error`. Everything else is an unexpected failure (exit 1).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or usage: the message names the value and how to fix it.

    Example:
        >>> raise UserError("--rows must be a positive integer. Received: --rows=-3")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: --rows must be a positive integer. Received: --rows=-3
    """


class DataError(UserError):
    """A malformed data line, reported as `FILE:LINE: reason`.

    Example:
        >>> str(DataError("reviews.tskv", 12, "missing field 'rating'"))
        "reviews.tskv:12: missing field 'rating'"
    """

    def __init__(self, path: str, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")
