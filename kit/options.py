"""Option dataclasses: one declaration gives the default, the help, the checks, the CLI flag and the docs.

A field declared with `option(default, help, ...)` carries its own flag name,
help, choices, bounds and rules. `check_options` refuses a value its metadata
does not allow, for the config sections (`kit.config`) and the stage options
alike; `add_options` turns such a dataclass into argparse flags whose help
shows the default read from the code, and `options_from` builds the dataclass
back from the parsed flags, so `kit generate`, `kit evaluate`, `kit data
prepare` and `kit tiny` never restate a default; `allowed` and `type_name`
give the words of docs/config.md (`kit.config_reference`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kit.errors import UserError


@dataclasses.dataclass(frozen=True)
class Rule:
    """A check on one field that bounds and choices cannot say, with the words for what it asks.

    Attributes:
        test: True when the value is allowed.
        text: What the value must be, completing "… must be": `"a non-empty name without '/'"`.

    Example:
        >>> Rule(bool, "a preset name or directory").test("")
        False
    """

    test: Callable[[Any], bool]
    text: str


def option(
    default,
    help: str,
    *,
    flag: str | None = None,
    choices: Sequence | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    greater_than: float | None = None,
    rules: Sequence[Rule] = (),
):
    """A dataclass field that carries its help, its checks and its command-line flag.

    `check_options` refuses a value outside what is declared here; `add_options`
    makes the flag (an integer flag with `minimum` is range-checked while parsing,
    naming the flag and the range); `kit.config_reference` writes the docs.

    Args:
        default: The value when none is given (immutable: a tuple, not a list).
        help: What the field does, one phrase or a few sentences.
        flag: The flag's name when it is not the field's (`top-k` for `k`).
        choices: The only values allowed.
        minimum: The smallest value allowed.
        maximum: The largest value allowed.
        greater_than: A bound the value must exceed (`> 0` for a learning rate).
        rules: Further checks, each with the words for what it asks (`Rule`).

    Example:
        >>> @dataclasses.dataclass
        ... class Opt:
        ...     n: int = option(1, "how many", minimum=1)
        >>> field = dataclasses.fields(Opt)[0]
        >>> field.metadata["help"], allowed(field)
        ('how many', '≥ 1')
    """
    metadata = {
        "help": help,
        "flag": flag,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "greater_than": greater_than,
        "rules": tuple(rules),
    }
    return dataclasses.field(default=default, metadata=metadata)


def is_option(field: dataclasses.Field) -> bool:
    """Whether `field` was declared with `option` (nested dataclasses and plain fields are not).

    Example:
        >>> from kit.generate.sampler import GenerateOptions
        >>> all(is_option(f) for f in dataclasses.fields(GenerateOptions))
        True
    """
    return "help" in field.metadata


def type_name(hint: Any) -> str:
    """A field's type in words, as messages and docs/config.md write it.

    Example:
        >>> type_name(int), type_name(tuple[int, ...]), type_name(int | None)
        ('int', 'list of int', 'int or None')
    """
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"list of {type_name(typing.get_args(hint)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def fits(hint: Any, value: Any) -> bool:
    """Whether `value` has the type `hint` (an int fits a float; a bool is not a number).

    Example:
        >>> fits(float, 2), fits(int, True), fits(tuple[int, ...], (1, 2)), fits(int | None, None)
        (True, False, True, True)
    """
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(fits(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(fits(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _one_of(meta: Mapping) -> str | None:
    return f"one of {', '.join(map(str, meta['choices']))}" if meta.get("choices") else None


def _range(meta: Mapping) -> str | None:
    low = meta.get("minimum")
    above = meta.get("greater_than")
    high = meta.get("maximum")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    parts = [f"≥ {low}"] if low is not None else []
    parts += [f"> {above}"] if above is not None else []
    parts += [f"≤ {high}"] if high is not None else []
    return " and ".join(parts) or None


def allowed(field: dataclasses.Field) -> str:
    """The values an option field allows, in words ("" when any value of its type is).

    These are the words after "must be" in `check_options`' messages and the
    "allowed" column of docs/config.md.

    Example:
        >>> from kit.config import TrainConfig
        >>> fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        >>> allowed(fields["decay"]), allowed(fields["min_lr_ratio"]), allowed(fields["learning_rate"])
        ('one of cosine, linear, constant', 'between 0 and 1', '> 0')
    """
    meta = field.metadata
    words = [w for w in (_one_of(meta), _range(meta)) if w]
    words += [rule.text for rule in meta.get("rules", ())]
    return "; ".join(words)


def _refusal(field: dataclasses.Field, hint: Any, value: Any) -> str | None:
    """What `value` must be instead, or None when the field's metadata allows it."""
    if not fits(hint, value):
        return type_name(hint)
    if value is None:  # an optional field left unset: nothing to bound
        return None
    meta = field.metadata
    if meta.get("choices") and value not in meta["choices"]:
        return _one_of(meta)
    low, above, high = meta.get("minimum"), meta.get("greater_than"), meta.get("maximum")
    # Each bound asks "not inside" rather than "outside": NaN compares False to everything, so it is refused.
    if (
        (low is not None and not value >= low)
        or (above is not None and not value > above)
        or (high is not None and not value <= high)
    ):
        return _range(meta)
    for rule in meta.get("rules", ()):
        if not rule.test(value):
            return rule.text
    return None


def check_options(obj, *, section: str | None = None, flags: bool = False) -> None:
    """Refuse the first option field of `obj` whose value its metadata does not allow.

    The one check of every option dataclass and config section: the type from
    the annotation, then `choices`, the bounds and the `rules` of `option`.
    The message names the value as the user wrote it: `Config key section.key`
    for a config section, the flag (`--max-rows`) with `flags`, else the field.

    Args:
        obj: An instance of a dataclass with `option` fields.
        section: The config section `obj` is (`"train"`).
        flags: Name fields by their command-line flag.

    Raises:
        UserError: "<name> must be <allowed>, received <value>."

    Example:
        >>> from kit.config import TrainConfig
        >>> check_options(TrainConfig(batch_size=0), section="train")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Config key train.batch_size must be ≥ 1, received 0.
    """
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        if not is_option(field):
            continue
        value = getattr(obj, field.name)
        expected = _refusal(field, hints[field.name], value)
        if expected is None:
            continue
        if section is not None:
            name = f"Config key {section}.{field.name}"
        else:
            name = flag_name(field) if flags else field.name
        shown = list(value) if isinstance(value, tuple) else value  # as TOML and --set write it
        raise UserError(f"{name} must be {expected}, received {shown!r}.")


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


def flag_name(field: dataclasses.Field) -> str:
    """The command-line flag of an option field.

    Example:
        >>> from kit.generate.sampler import SamplerSpec
        >>> [flag_name(f) for f in dataclasses.fields(SamplerSpec)][:2]
        ['--sampler', '--temperature']
    """
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
        if not is_option(field) or field.name in exclude:
            continue
        default, text = field.default, field.metadata["help"]
        dest = dest_prefix + field.name
        kind = str(field.type)
        if kind == "bool":
            flag = flag_name(field)
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
        parser.add_argument(
            flag_name(field), dest=dest, type=convert, default=default, choices=choices, help=text + shown
        )


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
