"""Shared plumbing for the kit-vs-Hugging-Face benchmarks: child processes, threads, memory, data, models.

Each side (kit / HF) runs in its own child process, so neither library's
threads, allocator or imports disturb the other, and each reports its own
peak memory. A child pins itself to the same CPU cores before importing
JAX or torch (XLA sizes its thread pool from the CPU affinity mask; torch
gets `set_num_threads`), so both sides use the same number of threads.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_HINT = "run `make demo` first (it writes data/prepared, models/tiny-base and runs/tiny-base, runs/tiny-lora)"


class BenchError(Exception):
    """A usage or setup problem: printed as one line, exit code 2."""


def pin_threads(threads: int) -> int:
    """Restrict this process to `threads` CPU cores (call before importing JAX/torch); returns the count."""
    cores = sorted(os.sched_getaffinity(0))
    n = max(1, min(threads, len(cores)))
    os.sched_setaffinity(0, cores[:n])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


def available_threads() -> int:
    return len(os.sched_getaffinity(0))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (getrusage max RSS)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mib() -> float:
    """Current resident memory of this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def run_child(script: Path, args: list[str], *, timeout: float | None = None) -> dict:
    """Run `script --child ... args` in a fresh interpreter; its last stdout line is a JSON result."""
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        if proc.returncode == 2 and tail:
            raise BenchError(tail[-1].removeprefix("error: "))
        raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd[1:])} printed no JSON result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """A child's result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def write_result(path: str | Path, result: dict) -> None:
    """Write a result atomically, with paths inside the repo written relative to it
    (results are committed; the directory a run happened in is not a result)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[1])
    text = json.dumps(result, ensure_ascii=False, indent=2).replace(root + "/", "").replace(root, ".")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- model configs and data


def preset_backbone_config(preset: str | Path) -> dict:
    """The `GemmaBackbone` config dict of a local preset dir (read from its config.json, no Keras import)."""
    path = Path(preset) / "config.json"
    if not path.is_file():
        raise BenchError(f"Model preset not found: {preset}; {DEMO_HINT}.")
    return json.loads(path.read_text())["config"]


def preset_proto(preset: str | Path) -> bytes:
    """The SentencePiece model of a local preset dir."""
    path = Path(preset) / "assets" / "tokenizer" / "vocabulary.spm"
    if not path.is_file():
        raise BenchError(f"Tokenizer not found: {path}; {DEMO_HINT}.")
    return path.read_bytes()


def backbone_config(size: str, preset: str | Path) -> dict:
    """`tiny`: the demo base's config; `2b`: Gemma 2 2B."""
    from flops import GEMMA2_2B

    return dict(GEMMA2_2B) if size == "2b" else preset_backbone_config(preset)


def load_split(data_dir: str | Path, split: str):
    if not (Path(data_dir) / "dataset_dict.json").is_file():
        raise BenchError(f"Prepared data not found: {data_dir}; {DEMO_HINT}.")
    from kit.data.prepare import load_prepared

    return load_prepared(data_dir)[split]


def sample_examples(data_dir: str | Path, preset: str | Path, *, split: str = "train", longest: int = 256):
    """The split's prompt + target pairs tokenised by the kit's `Encoder` (as `kit finetune` does)."""
    from kit.data.batching import Encoder, has_target

    ds = load_split(data_dir, split)
    encoder = Encoder(preset_proto(preset))
    examples = encoder.encode_pairs(ds["prompt"], ds["target"])
    return [e for e in examples if has_target(e, longest)], encoder.pad_id


def synthetic_examples(n: int, length: int, vocab: int, *, prompt_share: float = 0.25, seed: int = 0):
    """`n` random-token examples of exactly `length` inputs, the first `prompt_share` masked (GPU 2B mode).

    Example:
        >>> exs = synthetic_examples(2, 8, 100)
        >>> len(exs), len(exs[0].ids), exs[0].n_prompt
        (2, 9, 3)
    """
    import numpy as np

    from kit.data.batching import Example

    rng = np.random.default_rng(seed)
    ids = rng.integers(4, vocab, size=(n, length + 1), dtype=np.int32)
    ids[:, 0] = 2  # <bos>
    n_prompt = max(1, int(length * prompt_share)) + 1
    return [Example(row, n_prompt) for row in ids]


def build_kit_lm(size: str, preset: str | Path, *, dtype: str, seed: int = 0):
    """The kit's `GemmaCausalLM`: the demo base (`tiny`) or Gemma 2 2B with random weights (`2b`).

    The 2B model is the kit's own random-weight build (`model.init = "random"`,
    `kit.model.architectures`), with the committed tiny base's tokenizer
    (token ids are all the benchmark needs; they fit in the 256k vocabulary).
    """
    from kit.model import load_causal_lm
    from kit.model.architectures import build_random_lm

    if size == "tiny":
        preset_backbone_config(preset)  # a clear error when the demo has not run
        return load_causal_lm(str(preset), dtype=dtype)
    return build_random_lm("gemma2_2b_en", dtype=dtype, seed=seed)


def jax_device_info() -> dict:
    """Backend, device kind and peak bytes in use of JAX's first device."""
    import jax

    device = jax.devices()[0]
    stats = {}
    try:
        stats = device.memory_stats() or {}
    except Exception:  # CPU devices have no allocator stats
        stats = {}
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
    }


def check_jax_device(device: str) -> None:
    import jax

    backend = jax.default_backend()
    if device == "gpu" and backend != "gpu":
        raise BenchError(
            f"--device gpu: JAX sees no GPU (backend {backend!r}). Install jax[cuda12] "
            "(`pip install -e '.[bench,cuda]'`) on a machine with an NVIDIA GPU, or use --device cpu."
        )


def check_torch_device(device: str) -> str:
    import torch

    if device == "gpu":
        if not torch.cuda.is_available():
            raise BenchError(
                "--device gpu: torch sees no CUDA device (this is the CPU wheel?). Install a CUDA "
                "torch build of the same version on the GPU machine, or use --device cpu."
            )
        return "cuda"
    return "cpu"


# ---------------------------------------------------------------------- identical weights on both sides


def exporter_available() -> bool:
    """Whether the kit has its Hugging Face exporter (`kit export --to hf`, kit/model/hf_checkpoint.py)."""
    import importlib.util

    return importlib.util.find_spec("kit.model.hf_checkpoint") is not None


def hf_export(run: str | Path, out: str | Path, *, refresh: bool = False) -> Path:
    """Export `run` with `kit export --run RUN --to hf --out OUT` (reused while newer than the run).

    Raises:
        BenchError: the run is missing, or the exporter is not available / fails.
    """
    run, out = Path(run), Path(out)
    if not (run / "run.json").is_file():
        raise BenchError(f"Run not found: {run}; {DEMO_HINT}.")
    sources = [p for p in run.iterdir() if p.is_file()]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    marker = out / "config.json"
    if not refresh and marker.is_file() and marker.stat().st_mtime >= newest:
        return out
    if not exporter_available():
        raise BenchError(
            "The kit's Hugging Face exporter (`kit export --to hf`, kit/model/hf_checkpoint.py) is not available "
            "in this checkout; pass --random-init to compare speed with random weights of the same "
            "architecture instead."
        )
    if out.exists():
        import shutil

        shutil.rmtree(out)  # a stale export under bench/tmp
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kit", "export", "--run", str(run), "--to", "hf", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not marker.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BenchError(f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}): {' / '.join(tail)}")
    return out
