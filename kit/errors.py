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


class WriteError(UserError):
    """A write failed midway (disk full, I/O error): one line naming the path, what is kept and the cause.

    A `UserError`, so the app and notebooks show it as one line like any
    other; the CLI exits 1 for it (a failure, not bad input).

    Example:
        >>> import errno
        >>> print(WriteError.of("reports/demo", OSError(errno.ENOSPC, "No space left on device"), kept=True))
        Could not write reports/demo: No space left on device. The previous copy is kept unchanged; free some space and run again.
    """

    @classmethod
    def of(cls, path, error: OSError, *, kept: bool) -> WriteError:
        """The error for a failed write of `path`; `kept` says whether an earlier copy exists and stays."""
        import errno

        cause = error.strerror or str(error) or type(error).__name__
        what = "The previous copy is kept unchanged" if kept else "Nothing was left there"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "make the directory writable"
        else:
            fix = "check the disk"
        return cls(f"Could not write {path}: {cause}. {what}; {fix} and run again.")


class ProcessLost(UserError):
    """Another process of a multi-process job died or stopped answering, so this one stops too.

    A `UserError`, so it reaches the user as one line; the CLI exits 1 for it
    (a failure, not bad input).

    Example:
        >>> raise ProcessLost("Process 0 of 2: another process of this job stopped.")
        Traceback (most recent call last):
        ...
        kit.errors.ProcessLost: Process 0 of 2: another process of this job stopped.
    """
