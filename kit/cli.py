"""The `kit` command line: parse arguments, call one stage, map errors to exit codes.

Exit codes (DESIGN.md): 0 success; 2 bad input or usage, with one line on
stderr naming the value and the fix; 1 unexpected failure. Each subcommand is
a thin wrapper: the work lives in the `kit` library so the app and notebooks
call the very same functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from kit.errors import UserError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise UserError(f"{self.prog}: {message}. See `{self.prog} --help`.")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, received {text!r}")
    return value


# --------------------------------------------------------------------------- data


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from kit.data.synth import write_sample

    n = write_sample(args.out, rows=args.rows, seed=args.seed)
    print(f"Wrote {n} synthetic reviews to {args.out}")
    return EXIT_OK


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from kit.data.prepare import PrepareOptions, prepare

    options = PrepareOptions(
        on_error=args.on_error,
        max_rows=args.max_rows,
        balance=args.balance,
        seed=args.seed,
        val_share=args.val_share,
        test_share=args.test_share,
    )
    stats = prepare(args.input, args.out, options=options, progress=not args.quiet)
    splits = ", ".join(f"{k} {v}" for k, v in stats["splits"].items())
    label = " from the SYNTHETIC sample" if stats["synthetic"] else ""
    print(f"Prepared {args.out}{label}: {splits} (skipped lines: {len(stats['skipped_lines'])})")
    return EXIT_OK


def _cmd_data_download(args: argparse.Namespace) -> int:
    from kit.data.download import download

    path = download(args.source, args.out, url=args.url, size=args.size, sha256=args.sha256,
                    progress=not args.quiet)
    print(f"Dataset ready: {path}")
    return EXIT_OK


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="synthesise, download and prepare review data")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)

    p = dsub.add_parser("synth", help="write a deterministic synthetic sample (.tskv)")
    p.add_argument("--out", required=True, help="output .tskv path")
    p.add_argument("--rows", type=_positive_int, default=5000, help="number of reviews (default 5000)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_data_synth)

    p = dsub.add_parser("prepare", help="clean, split by organisation, add keywords and prompts")
    p.add_argument("--input", required=True, help=".tskv or .parquet file, or hf://OWNER/NAME")
    p.add_argument("--out", required=True, help="output directory for the prepared dataset")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="bad lines: stop at the first (fail) or list them in stats.json (skip)")
    p.add_argument("--max-rows", type=_positive_int, default=None, help="read at most N input rows")
    p.add_argument("--balance", choices=["none", "rating"], default="none",
                   help="rating: downsample train so ratings are balanced")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed for splitting and field dropping")
    p.add_argument("--val-share", type=float, default=0.05, help="share of organisations in validation")
    p.add_argument("--test-share", type=float, default=0.05, help="share of organisations in test")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_prepare)

    p = dsub.add_parser("download", help="download the real dataset (needs internet)")
    p.add_argument("--source", choices=["github", "hub"], default="github",
                   help="github: the original .tskv (LFS); hub: the parquet on the Hugging Face Hub")
    p.add_argument("--out", default="data/raw", help="output directory (default data/raw)")
    p.add_argument("--url", default=None, help="override the download URL (mirrors, tests)")
    p.add_argument("--size", type=_positive_int, default=None,
                   help="github: expected size in bytes (default: the official file's 378730064)")
    p.add_argument("--sha256", default=None,
                   help="github: expected sha256 in hex (default: the official file's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_download)


# --------------------------------------------------------------------------- model


def _cmd_tiny(args: argparse.Namespace) -> int:
    import dataclasses

    from kit.tiny import TinySpec, make_tiny_base

    overrides = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps), ("seed", args.seed))
                 if v is not None}
    spec = dataclasses.replace(TinySpec(), **overrides)
    info = make_tiny_base(args.data, args.out, spec, progress=not args.quiet)
    p = info["pretraining"]
    print(f"Wrote tiny Gemma 2 base to {args.out}: {info['parameters']:,} parameters, vocabulary "
          f"{info['vocabulary_size']}, val loss {p['initial_val_loss']:.3f} -> {p['final_val_loss']:.3f} "
          f"in {info['total_seconds']:.0f} s")
    return EXIT_OK


def _cmd_finetune(args: argparse.Namespace) -> int:
    from kit.config import load_config
    from kit.train import finetune

    cfg = load_config(args.config, args.set)
    info = finetune(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    m = info.get("metrics") or {}
    where = f"{cfg.run.out_dir}/{cfg.run.name}"
    if info.get("adapter"):
        print(f"Fine-tuned {where} ({info['status']}): val loss {m.get('initial_val_loss', float('nan')):.4f} "
              f"-> {m.get('val_loss', float('nan')):.4f} on review tokens in {info['timings']['train_s']:.0f} s")
    else:
        loss = f"val loss {m['val_loss']:.4f}" if "val_loss" in m else "no validation data"
        print(f"Registered base model {cfg.model.preset} as {where} ({loss})")
    return EXIT_OK


def _add_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny", help="train the tiny Gemma 2 base (tokenizer + pretraining) for offline use")
    p.add_argument("--data", default="data/prepared", help="prepared dataset dir (default data/prepared)")
    p.add_argument("--out", default="models/tiny-base", help="preset dir to write (default models/tiny-base)")
    p.add_argument("--epochs", type=float, default=None, help="pretraining passes over the train reviews")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="cap on pretraining steps (quick tries)")
    p.add_argument("--seed", type=_nonneg_int, default=None, help="initialisation/data-order seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tiny)

    p = sub.add_parser("finetune", help="LoRA fine-tune a Gemma preset into runs/<name> (or register a base model)")
    p.add_argument("--config", required=True, help="TOML config, e.g. configs/tiny.toml")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set lora.rank=4")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run dir of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)


# --------------------------------------------------------------------------- main

# Each entry adds one top-level subcommand. Later stages register here.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_data, _add_model]


def build_parser() -> argparse.ArgumentParser:
    """The full `kit` argument parser.

    Example:
        >>> build_parser().parse_args(["data", "synth", "--out", "x.tskv"]).rows
        5000
    """
    parser = _Parser(prog="kit", description="geo-reviews kit: LoRA fine-tuning of Gemma 2 for Russian place reviews")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 2 bad input, 1 unexpected)."""
    try:
        from dotenv import load_dotenv

        load_dotenv()  # secrets from .env; never printed
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
