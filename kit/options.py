"""Option dataclasses and the command-line flags derived from them.

A field declared with `option(default, help, ...)` carries its own flag name,
help, choices and minimum. `add_options` turns such a dataclass into argparse
flags whose help shows the default read from the code, and `options_from`
builds the dataclass back from the parsed flags, so `kit generate`,
`kit evaluate`, `kit data prepare` and `kit tiny` never restate a default.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from kit.errors import UserError


def option(
    default, help: str, *, flag: str | None = None, choices=None, minimum: int | None = None, maximum: int | None = None
):
    """A dataclass field that also describes its command-line flag (see `add_options`).

    `minimum` and `maximum` let the CLI refuse an integer out of range while parsing,
    with the flag's name and the range; the dataclass still validates its own values
    (`check_minimums`) for callers that are not the CLI.

    Example:
        >>> @dataclasses.dataclass
        ... class Opt:
        ...     n: int = option(1, "how many")
        >>> dataclasses.fields(Opt)[0].metadata["help"]
        'how many'
    """
    return dataclasses.field(
        default=default,
        metadata={"help": help, "flag": flag, "choices": choices, "minimum": minimum, "maximum": maximum},
    )


def check_minimums(obj) -> None:
    """Refuse an option field below its `minimum` (or above its `maximum`), for callers that are not the CLI.

    Example:
        >>> @dataclasses.dataclass
        ... class Opt:
        ...     n: int = option(1, "how many", minimum=1)
        >>> check_minimums(Opt(n=0))
        Traceback (most recent call last):
        ...
        kit.errors.UserError: n must be a positive integer. Received: n=0
    """
    for field in dataclasses.fields(obj):
        minimum, maximum = field.metadata.get("minimum"), field.metadata.get("maximum")
        value = getattr(obj, field.name)
        if minimum is None or value is None:
            continue
        if maximum is not None and (not isinstance(value, int) or not minimum <= value <= maximum):
            raise UserError(
                f"{field.name} must be an integer from {minimum} to {maximum}. Received: {field.name}={value!r}"
            )
        if not isinstance(value, int) or value < minimum:
            expected = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
            raise UserError(f"{field.name} must be {expected}. Received: {field.name}={value!r}")


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (else argparse's one-line usage error).

    Example:
        >>> positive_int("3")
        3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """argparse type: an integer ≥ 0.

    Example:
        >>> nonneg_int("0")
        0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, received {text!r}")
    return value


def int_in(minimum: int, maximum: int):
    """argparse type: an integer from `minimum` to `maximum` (else a one-line usage error naming the range).

    Example:
        >>> int_in(1, 4095)("192")
        192
        >>> int_in(1, 4095)("1000000000")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer from 1 to 4095, received '1000000000'
    """

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected an integer from {minimum} to {maximum}, received {text!r}")
        return value

    return convert


def _flag(field) -> str:
    return "--" + (field.metadata.get("flag") or field.name).replace("_", "-")


def add_options(
    parser: argparse.ArgumentParser, cls: type, *, dest_prefix: str = "", exclude: Sequence[str] = ()
) -> None:
    """Add one flag per `option` field of the dataclass `cls`, default and help from the field.

    A bool field that defaults to True becomes `--no-<flag>`; fields without
    option metadata (nested dataclasses) and `exclude`d ones are skipped.

    Example:
        >>> from kit.generate.sampler import GenerateOptions
        >>> parser = argparse.ArgumentParser()
        >>> add_options(parser, GenerateOptions)
        >>> parser.parse_args(["--n", "2"]).n, parser.parse_args([]).max_new_tokens
        (2, 192)
    """
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata or field.name in exclude:
            continue
        default, text = field.default, field.metadata["help"]
        dest = dest_prefix + field.name
        kind = str(field.type)
        if kind == "bool":
            flag = _flag(field)
            if default:
                parser.add_argument("--no-" + flag[2:], dest=dest, action="store_false", help=f"do not {text}")
            else:
                parser.add_argument(flag, dest=dest, action="store_true", help=text)
            continue
        convert = int if kind.startswith("int") else float if kind.startswith("float") else str
        minimum, maximum = field.metadata.get("minimum"), field.metadata.get("maximum")
        if convert is int and minimum is not None:
            convert = int_in(minimum, maximum) if maximum is not None else positive_int if minimum >= 1 else nonneg_int
        choices = field.metadata.get("choices")
        if choices and convert is str:

            def convert(text, _choices=choices):  # `top-k` and `top_k` alike
                name = text.replace("-", "_")
                return name if name in _choices else text

        shown = "" if default is None else f" (default {default})"  # None: the help says what it means
        parser.add_argument(_flag(field), dest=dest, type=convert, default=default, choices=choices, help=text + shown)


def options_from(cls: type, args: argparse.Namespace, *, dest_prefix: str = "", **values):
    """Build `cls` from the flags `add_options` added (plus `values`); validation is the dataclass's own.

    Example:
        >>> from kit.generate.sampler import SamplerSpec
        >>> parser = argparse.ArgumentParser()
        >>> add_options(parser, SamplerSpec, dest_prefix="s_")
        >>> options_from(SamplerSpec, parser.parse_args(["--top-k", "7"]), dest_prefix="s_").k
        7
    """
    for field in dataclasses.fields(cls):
        dest = dest_prefix + field.name
        if field.name not in values and hasattr(args, dest):
            values[field.name] = getattr(args, dest)
    return cls(**values)
