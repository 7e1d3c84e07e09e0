"""What both download sources say: status notes, one-line errors, the sample hint.

`kit.data.download` (the GitHub .tskv) and `kit.data.hub` (the Hub parquet)
turn failures into one `UserError` line the same way: walk the exception's
causes to classify it, shorten it to one line, and point at the bundled
synthetic sample. Neither source imports the other for this.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

SAMPLE_HINT = "Check your internet access, or use the bundled synthetic sample data/sample/geo-reviews-sample.tskv."


def exception_chain(error: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """Yield `error` and what it wraps (exception args, ``.reason``, cause, context), recursively.

    HTTP clients nest the useful cause (a DNS failure, a refused connection)
    several layers down; the walk stops 6 levels deep.

    Args:
        error: The exception caught.
        depth: How deep this call is in the walk (callers leave it at 0).

    Example:
        >>> try:
        ...     try:
        ...         raise ConnectionRefusedError("refused")
        ...     except OSError as inner:
        ...         raise RuntimeError("request failed") from inner
        ... except RuntimeError as e:
        ...     [type(c).__name__ for c in exception_chain(e)]
        ['RuntimeError', 'ConnectionRefusedError', 'ConnectionRefusedError']
    """
    if depth > 6:
        return
    yield error
    inner = [a for a in error.args if isinstance(a, BaseException)]
    inner += [getattr(error, "reason", None), error.__cause__, error.__context__]
    for e in inner:
        if isinstance(e, BaseException) and e is not error:
            yield from exception_chain(e, depth + 1)


def one_line(error: BaseException, limit: int = 200) -> str:
    """`error`'s text on one line, at most `limit` characters (its class name when empty).

    Example:
        >>> one_line(OSError("no route\\n  to host")), one_line(TimeoutError())
        ('no route to host', 'TimeoutError')
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def say(enabled: bool, message: str) -> None:
    """Print a status note on stderr when `enabled` (the `progress` flag of a download).

    Example:
        >>> say(False, "not shown")
    """
    if enabled:
        print(message, file=sys.stderr)
