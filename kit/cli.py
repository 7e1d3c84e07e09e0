"""The `kit` command line: parse arguments, call one stage, map errors to exit codes.

Exit codes (docs/design.md): 0 success; 2 bad input or usage, with one line on
stderr naming the value and the fix; 1 unexpected failure. Each subcommand is
a thin wrapper: the work lives in the `kit` library so the app and notebooks
call the very same functions. Commands are registered by stage, one
`_add_<stage>` function each (data, tiny, import, train, generate, export, evaluate),
next to the `_cmd_*` functions they call.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable, Sequence

from kit.errors import ProcessLost, UserError, WriteError
from kit.options import add_options, nonneg_int, options_from, positive_int

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# The output rule (kit.atomic), as every writing command's --help states it.
DIR_OVERWRITE_HELP = (
    "replace an earlier {what} at --out; without it an existing output is refused. A file, or a "
    "non-empty directory the kit did not write, is never replaced"
)
FILE_OVERWRITE_HELP = "replace an existing file at --out; without it an existing file is refused (never appended)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise UserError(f"{self.prog}: {message}. See `{self.prog} --help`.")


# --------------------------------------------------------------------------- data


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from kit.atomic import check_output_file
    from kit.data.synth import write_sample

    check_output_file(args.out, overwrite=args.overwrite)
    n = write_sample(args.out, rows=args.rows, seed=args.seed)
    print(f"Wrote {n} synthetic reviews to {args.out}")
    return EXIT_OK


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from kit.data.prepare import PrepareOptions, prepare

    options = options_from(PrepareOptions, args)
    stats = prepare(args.input, args.out, options=options, progress=not args.quiet, overwrite=args.overwrite)
    splits = ", ".join(f"{k} {v}" for k, v in stats["splits"].items())
    label = " from the SYNTHETIC sample" if stats["synthetic"] else ""
    print(f"Prepared {args.out}{label}: {splits} (skipped lines: {len(stats['skipped_lines'])})")
    return EXIT_OK


def _cmd_data_download(args: argparse.Namespace) -> int:
    from kit.data.download import download

    path = download(args.source, args.out, url=args.url, size=args.size, sha256=args.sha256, progress=not args.quiet)
    print(f"Dataset ready: {path}")
    return EXIT_OK


def _add_data(sub: argparse._SubParsersAction) -> None:
    from kit.data.prepare import PrepareOptions

    data = sub.add_parser("data", help="synthesise, download and prepare review data")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)

    p = dsub.add_parser("synth", help="write a deterministic synthetic sample (.tskv)")
    p.add_argument("--out", required=True, help="output .tskv path (written atomically)")
    p.add_argument("--overwrite", action="store_true", help=FILE_OVERWRITE_HELP)
    p.add_argument("--rows", type=positive_int, default=5000, help="number of reviews (default 5000)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_data_synth)

    p = dsub.add_parser("prepare", help="clean, split by organisation, add keywords and prompts")
    p.add_argument("--input", required=True, help=".tskv or .parquet file, or hf://OWNER/NAME")
    p.add_argument("--out", required=True, help="output directory for the prepared dataset (new or empty)")
    p.add_argument("--overwrite", action="store_true", help=DIR_OVERWRITE_HELP.format(what="prepared dataset"))
    add_options(p, PrepareOptions)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_prepare)

    p = dsub.add_parser("download", help="download the real dataset (needs internet)")
    p.add_argument(
        "--source",
        choices=["github", "hub"],
        default="github",
        help="github: the original .tskv (LFS); hub: the parquet on the Hugging Face Hub",
    )
    p.add_argument("--out", default="data/raw", help="output directory (default data/raw)")
    p.add_argument("--url", default=None, help="override the download URL (mirrors, tests)")
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="github: expected size in bytes (default: the official file's 378730064)",
    )
    p.add_argument("--sha256", default=None, help="github: expected sha256 in hex (default: the official file's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_download)


# --------------------------------------------------------------------------- tiny (a base model to fine-tune)


def _cmd_tiny(args: argparse.Namespace) -> int:
    from kit.model.tiny import TinySpec
    from kit.train.pretrain import make_tiny_base

    spec = options_from(TinySpec, args)
    # The recipe, recorded so the base can be rebuilt exactly; --overwrite is how
    # it was written, not what was made, so it is left out.
    recipe = [a for a in sys.argv[1:] if a != "--overwrite"]
    command = "kit " + shlex.join(recipe) if recipe[:1] == ["tiny"] else None
    info = make_tiny_base(
        args.data,
        args.out,
        spec,
        progress=not args.quiet,
        command=command,
        overwrite=args.overwrite,
        extra_data=args.extra_data,
    )
    p = info["pretraining"]
    print(
        f"Wrote tiny Gemma 2 base to {args.out}: {info['parameters']:,} parameters, vocabulary "
        f"{info['vocabulary_size']}, val loss {p['initial_val_loss']:.3f} -> {p['final_val_loss']:.3f} "
        f"in {info['total_seconds']:.0f} s"
    )
    return EXIT_OK


def _add_tiny(sub: argparse._SubParsersAction) -> None:
    from kit.model.tiny import TinySpec

    p = sub.add_parser("tiny", help="train the tiny Gemma 2 base (tokenizer + pretraining) for offline use")
    p.add_argument("--data", default="data/prepared", help="prepared dataset dir (default data/prepared)")
    p.add_argument("--out", default="models/tiny-base", help="preset dir to write (default models/tiny-base)")
    p.add_argument(
        "--extra-data",
        default=None,
        help="another prepared dataset to pretrain on too (every split, less any review of --data), "
        "e.g. a larger synthetic sample; the fine-tune still reads only --data",
    )
    p.add_argument("--overwrite", action="store_true", help=DIR_OVERWRITE_HELP.format(what="tiny base"))
    add_options(p, TinySpec)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tiny)


# --------------------------------------------------------------------------- import (a pretrained GGUF as a base)


def _cmd_import(args: argparse.Namespace) -> int:
    from kit.model.gguf_import import import_gguf

    info = import_gguf(args.gguf, args.out, overwrite=args.overwrite)
    types = ", ".join(f"{k} {v}" for k, v in info["tensor_types"].items())
    filled = ", ".join(f"{k}={v}" for k, v in info["defaults_filled"].items()) or "none"
    print(
        f"Imported {info['source']} ({info['architecture']}, {info['parameters']:,} parameters, tensors: {types}) "
        f"to {args.out} as a float32 KerasHub preset in {info['seconds']:.0f} s; filled by default: {filled}"
    )
    return EXIT_OK


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="turn a llama.cpp GGUF of a Gemma 2/3 model into a KerasHub preset dir (float32)")
    p.add_argument("--gguf", required=True, metavar="FILE", help="the .gguf file, e.g. gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--out", required=True, help="output preset dir (new or empty), e.g. models/gemma3-270m")
    p.add_argument("--overwrite", action="store_true", help=DIR_OVERWRITE_HELP.format(what="import"))
    p.set_defaults(func=_cmd_import)


# --------------------------------------------------------------------------- train: finetune, plan, launch


def _cmd_finetune(args: argparse.Namespace) -> int:
    from kit.config import load_config
    from kit.model.multihost import is_writer
    from kit.train import finetune

    if args.processes > 1 or args.devices_per_process:
        from kit.launch import launch

        # The same fine-tune in every local process (each one joins the job from its environment).
        command = ["finetune", "--config", args.config, *sum((["--set", o] for o in args.set), [])]
        command += [*(["--runs-dir", args.runs_dir] if args.runs_dir else [])]
        command += [
            f for f, on in (("--resume", args.resume), ("--overwrite", args.overwrite), ("--quiet", args.quiet)) if on
        ]
        return launch(command, processes=args.processes, devices_per_process=args.devices_per_process or 1)
    overrides = [*args.set, *([f"run.out_dir={args.runs_dir}"] if args.runs_dir else [])]
    cfg = load_config(args.config, overrides)
    again = ["kit", "finetune", "--config", args.config, *sum((["--set", o] for o in overrides), []), "--resume"]
    info = finetune(
        cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, resume_command=shlex.join(again)
    )
    if not is_writer():  # process 0 of a multi-process job reports
        return EXIT_OK
    m = info.metrics
    where = f"{cfg.run.out_dir}/{cfg.run.name}"
    if info.stopped:
        print(
            f"Stopped {where} at step {info.stopped['step']}/{info.stopped['total_steps']} on the time budget "
            f"(train.max_minutes); resume with: {info.stopped['resume']}"
        )
    elif info.adapter:
        print(
            f"Fine-tuned {where} ({info.status}): val loss {m.get('initial_val_loss', float('nan')):.4f} "
            f"-> {m.get('val_loss', float('nan')):.4f} on review tokens in {info.timings['train_s']:.0f} s"
        )
    else:
        loss = f"val loss {m['val_loss']:.4f}" if "val_loss" in m else "no validation data"
        print(f"Registered base model {cfg.model.preset} as {where} ({loss})")
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from kit.config import load_config
    from kit.train.plan import format_plan, make_plan

    cfg = load_config(args.config, args.set)
    plan = make_plan(cfg, args.device, all_buckets=args.all_buckets, mfu=args.mfu)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return EXIT_OK


def _cmd_launch(args: argparse.Namespace) -> int:
    from kit.launch import launch

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] == ["launch"]:
        raise UserError("kit launch cannot launch `kit launch`; give the command to run, e.g. -- finetune ...")
    return launch(command, processes=args.processes, devices_per_process=args.devices_per_process or 1)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="LoRA fine-tune a Gemma preset into runs/<name> (or register a base model)")
    p.add_argument("--config", required=True, help="TOML config, e.g. configs/tiny.toml")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set lora.rank=4",
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="parent dir of run dirs (sets run.out_dir), e.g. /kaggle/working/runs or a Google Drive folder",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run of the same name; a non-empty dir the kit did not write is never replaced",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_launch_options(p, default_processes=1)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("plan", help="memory, FLOPs and time per epoch of a config's train step on a device")
    p.add_argument("--config", required=True, help="TOML config, e.g. configs/gemma2_2b_gpu.toml")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (the accelerator present), cpu, t4, t4x2, p100, l4, a100-40g, a100-80g, h100, v3-8, "
        "v5e-1, v5e-4 or v5e-8; TPUs and cpu are compiled for, GPUs estimated",
    )
    p.add_argument("--all-buckets", action="store_true", help="compile every bucket, not only the largest")
    p.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation for the time estimate")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "launch",
        help="run a kit command as N local processes of one multi-process JAX job (testing multi-host runs)",
        description="Start N local processes on this machine's CPU that form one JAX job (coordinator on "
        "127.0.0.1, gloo collectives), e.g. `kit launch --processes 2 --devices-per-process 4 -- finetune "
        "--config configs/tiny.toml`. When one exits non-zero the others are stopped; the exit code is that "
        "process's (128+N when killed by signal N). For TPU pod slices and GPU hosts see docs/multihost.md.",
    )
    _add_launch_options(p, default_processes=2)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the kit command, e.g. -- finetune --config ...")
    p.set_defaults(func=_cmd_launch)


def _add_launch_options(p: argparse.ArgumentParser, *, default_processes: int) -> None:
    p.add_argument(
        "--processes",
        type=positive_int,
        default=default_processes,
        help=f"local processes forming one multi-process JAX job on the CPU (default {default_processes}; "
        "see docs/multihost.md)",
    )
    p.add_argument(
        "--devices-per-process",
        type=positive_int,
        default=None,
        metavar="M",
        help="virtual CPU devices in each local process (default 1)",
    )


# --------------------------------------------------------------------------- generate


def _cmd_generate(args: argparse.Namespace) -> int:
    import json
    import time

    from kit.data.prepare import load_rubrics
    from kit.generate import (
        GenerateOptions,
        Generator,
        Request,
        SamplerSpec,
        enable_compile_cache,
        read_requests,
        response_records,
        write_responses,
    )
    from kit.model import load_model
    from kit.runs import default_data_dir

    single = any(v is not None for v in (args.rubrics, args.rating, args.keywords, args.name, args.address))
    if args.requests and single:
        raise UserError("Give either --requests FILE or --rubrics/--rating/..., not both.")
    if not args.requests and (args.rubrics is None or args.rating is None):
        raise UserError("kit generate needs --rubrics and --rating (or --requests FILE). See `kit generate --help`.")
    if args.requests and not args.out:
        raise UserError("--requests needs --out FILE.jsonl for the generated reviews.")
    if args.out and not args.requests:
        raise UserError("--out is for batch mode: give --requests IN.jsonl too, or drop --out to print the review.")
    if args.out:
        from kit.atomic import check_output_file

        check_output_file(args.out, overwrite=args.overwrite)  # before the model loads
    if args.stream and (args.requests or args.json):
        raise UserError("--stream prints one request's reviews as text while they are written; drop --requests/--json.")
    sampler = options_from(SamplerSpec, args, dest_prefix="sampler_")
    options = options_from(GenerateOptions, args)
    vocabulary = load_rubrics(args.data or default_data_dir(args.model))
    if args.requests:
        requests = read_requests(args.requests, vocabulary)
    else:
        requests = [
            Request.create(
                rubrics=args.rubrics,
                rating=args.rating,
                keywords=args.keywords,
                name=args.name,
                address=args.address,
                vocabulary=vocabulary,
            )
        ]
    enable_compile_cache()
    t0 = time.perf_counter()
    generator = Generator(load_model(args.model, dtype=args.dtype), batch_size=options.batch_size)
    t1 = time.perf_counter()
    if args.stream:
        return _print_stream(generator.stream(requests[0], sampler, n=options.n, max_new_tokens=options.max_new_tokens))
    results = generator.generate(requests, sampler, n=options.n, max_new_tokens=options.max_new_tokens)
    seconds = {"load": round(t1 - t0, 3), "generate": round(time.perf_counter() - t1, 3)}
    records = response_records(requests, results)
    if args.requests:
        meta = {"model": args.model, "sampler": dataclasses.asdict(sampler), "max_new_tokens": options.max_new_tokens}
        write_responses(args.out, records, meta, overwrite=args.overwrite)
        print(
            f"Wrote {sum(len(s) for s in results)} reviews for {len(requests)} requests to {args.out} "
            f"(load {seconds['load']:.1f} s, generate {seconds['generate']:.1f} s)"
        )
    elif args.json:
        print(
            json.dumps(
                {"model": args.model, "sampler": dataclasses.asdict(sampler), **records[0], "seconds": seconds},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        texts = [s.text for s in results[0]]
        print(texts[0] if len(texts) == 1 else "\n\n".join(f"[{i}] {t}" for i, t in enumerate(texts, 1)))
    return EXIT_OK


def _print_stream(stream) -> int:
    """The first review as it is written, then the others (the same texts `kit generate` prints)."""
    print("[1] " if stream.n > 1 else "", end="", flush=True)
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    for i, sample in enumerate(stream.samples[1:], 2):
        print(f"\n[{i}] {sample.text}")
    return EXIT_OK


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from kit.generate import GenerateOptions, SamplerSpec

    p = sub.add_parser("generate", help="write reviews for a request (or a JSONL file of requests)")
    p.add_argument(
        "--model", required=True, help="run dir (runs/<name>), preset dir, built-in preset, kaggle:// or hf://"
    )
    p.add_argument("--rubrics", default=None, help="1-5 rubrics separated by ';', e.g. 'Кафе;Ресторан'")
    p.add_argument("--rating", default=None, help="requested stars, 1-5")
    p.add_argument("--keywords", default=None, help="up to 10 keywords separated by ',', e.g. 'кофе, десерты'")
    p.add_argument("--name", default=None, help="organisation name (optional)")
    p.add_argument("--address", default=None, help="organisation address (optional)")
    p.add_argument(
        "--requests",
        default=None,
        metavar="IN.jsonl",
        help="batch mode: one JSON request per line (keys rubrics, rating, keywords, name, address)",
    )
    p.add_argument("--out", default=None, metavar="OUT.jsonl", help="batch mode: output file (written atomically)")
    p.add_argument("--overwrite", action="store_true", help=FILE_OVERWRITE_HELP)
    p.add_argument(
        "--data",
        default=None,
        help="prepared dataset dir holding the rubric vocabulary (default: the run's data dir, else data/prepared)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (request, samples, timings) instead of text")
    p.add_argument("--stream", action="store_true", help="print the review while it is written (one request)")
    add_options(p, GenerateOptions)
    add_options(p, SamplerSpec, dest_prefix="sampler_")
    p.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="weights dtype (default: the run's)"
    )
    p.set_defaults(func=_cmd_generate)


# --------------------------------------------------------------------------- export


def _cmd_export(args: argparse.Namespace) -> int:
    from kit.model.export import export_run, push

    evaluation = None
    if args.report:  # the report's headline goes into the model card
        from kit.eval.report import headline_table, read_metrics

        result = read_metrics(args.report)
        n = (result.get("requests") or {}).get("n", "?")
        label = " on the SYNTHETIC sample" if result.get("synthetic") else ""
        evaluation = f"`kit evaluate`, {n} requests{label}, 95 % bootstrap intervals:\n\n{headline_table(result)}"
    info = export_run(
        args.run,
        args.to,
        args.out,
        dtype=args.dtype,
        base_model=args.base_model,
        evaluation=evaluation,
        overwrite=args.overwrite,
    )
    what = "a PEFT LoRA adapter" if info["format"] == "peft" else f"a {info['format']} checkpoint"
    print(f"Exported {args.run} as {what} to {args.out} ({info['parameters']:,} parameters in the model)")
    if args.push:
        url = push(args.out, args.push, fmt=args.to)
        print(f"Pushed {args.out} to {url}")
    return EXIT_OK


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a run as a merged KerasHub preset, a Hugging Face Gemma 2 checkpoint or a PEFT adapter"
    )
    p.add_argument("--run", required=True, help="run dir, e.g. runs/tiny-lora")
    p.add_argument(
        "--to",
        required=True,
        choices=["keras", "hf", "peft"],
        help="keras: merged preset; hf: transformers Gemma 2 (merged); peft: the LoRA adapter alone, for the HF base",
    )
    p.add_argument(
        "--base-model",
        default=None,
        metavar="REPO_OR_DIR",
        help="peft: the HF base the adapter names (default: the Hub repo of the run's Gemma preset, "
        "e.g. google/gemma-2-2b; for a local base, the dir of `kit export --to hf` of the base run)",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="REPORT_DIR",
        help="hf/peft: put this `kit evaluate` report's headline table into the model card",
    )
    p.add_argument("--out", required=True, help="output directory (new or empty; never a run dir)")
    p.add_argument("--overwrite", action="store_true", help=DIR_OVERWRITE_HELP.format(what="export"))
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="weights dtype of the export (default: the run's)",
    )
    p.add_argument(
        "--push",
        default=None,
        metavar="TARGET",
        help="also upload (with the model card): hf://OWNER/REPO (any export) or "
        "kaggle://OWNER/MODEL/keras/VARIANT (keras)",
    )
    p.set_defaults(func=_cmd_export)


# --------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kit.eval import EvalOptions, evaluate_models, headline_table
    from kit.generate import SamplerSpec

    sampler = options_from(SamplerSpec, args, dest_prefix="sampler_")
    options = options_from(EvalOptions, args, sampler=sampler, progress=not args.quiet)
    result = evaluate_models(args.models, args.data, out=args.out, options=options, overwrite=args.overwrite)
    label = " (SYNTHETIC sample data)" if result["synthetic"] else ""
    print(
        f"Report {args.out}{label}: {result['requests']['n']} requests, {len(args.models)} models + human, "
        f"{result['timings']['total_s']:.0f} s"
    )
    print(headline_table(result))
    return EXIT_OK


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from kit.eval import EvalOptions
    from kit.generate import SamplerSpec

    p = sub.add_parser("evaluate", help="run models on the same requests and write a side-by-side report")
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="RUN_DIR",
        help="run dirs to compare (base or LoRA), e.g. runs/tiny-base runs/tiny-lora",
    )
    p.add_argument("--data", default="data/prepared", help="prepared dataset dir (default data/prepared)")
    p.add_argument("--out", required=True, help="report dir to write, e.g. reports/demo (new or empty)")
    p.add_argument(
        "--overwrite", action="store_true", help=DIR_OVERWRITE_HELP.format(what="report (its votes.json too)")
    )
    add_options(p, EvalOptions, exclude=("progress",))
    # The evaluation's --seed seeds the sampler too, so the sampler's own is not a flag here.
    add_options(p, SamplerSpec, dest_prefix="sampler_", exclude=("seed",))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate)


# --------------------------------------------------------------------------- main

# One function per stage adds that stage's subcommands, in the order `kit --help` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data,
    _add_tiny,
    _add_import,
    _add_train,
    _add_generate,
    _add_export,
    _add_evaluate,
]


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
        return _main(argv)
    except Exception:  # an unexpected failure: its traceback, then (in a job) leave at once
        _leave_job_on_error(EXIT_FAILURE)
        raise


def _leave_job_on_error(code: int) -> None:
    """A process of a multi-process job that fails exits at once, so its peers stop too (docs/multihost.md)."""
    if code != EXIT_OK and "kit.model.multihost" in sys.modules:
        from kit.model import multihost

        if multihost.in_job():
            import traceback

            import jax

            error = sys.exc_info()[1]
            if isinstance(error, jax.errors.JaxRuntimeError):  # a collective failed: a peer went away
                print(f"error: {multihost.lost(error)}", file=sys.stderr)
            elif error is not None and not isinstance(error, UserError):
                traceback.print_exc()
            multihost.leave(code)


def _main(argv: Sequence[str] | None) -> int:
    try:
        from dotenv import load_dotenv

        load_dotenv()  # secrets from .env; never printed
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (WriteError, ProcessLost) as e:  # disk full, a lost peer process: a failure, but one line
        print(f"error: {e}", file=sys.stderr)
        _leave_job_on_error(EXIT_FAILURE)
        return EXIT_FAILURE
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        _leave_job_on_error(EXIT_USAGE)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
