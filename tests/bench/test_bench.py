"""The kit-vs-Hugging-Face benchmarks: flags, FLOPs maths, and that both sides build the same model.

The timed runs themselves are `make bench`'s job; here only a seconds-long
smoke run (marked slow) checks the whole pipeline on the micro model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import flops  # noqa: E402
import generate_throughput  # noqa: E402
import hf_gemma2  # noqa: E402
import train_throughput  # noqa: E402

ALL = train_throughput.LORA_TARGETS["all"]


def test_gemma2_2b_config_is_transformers_default():
    """transformers' `Gemma2Config()` defaults are Gemma 2 2B: our mapping of the Keras config must equal them."""
    transformers = pytest.importorskip("transformers")
    ours = hf_gemma2.hf_config_from(flops.GEMMA2_2B)
    ref = transformers.Gemma2Config()
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "query_pre_attn_scalar",
        "sliding_window",
        "final_logit_softcapping",
        "attn_logit_softcapping",
        "hidden_activation",
        "layer_types",
    ):
        assert ours[key] == getattr(ref, key), key


def test_bench_config_is_the_kits_export_mapping():
    """One mapping: the HF side's config comes from kit/model/hf_checkpoint.py, not a copy in bench/."""
    from kit.model import hf_checkpoint

    assert hf_gemma2.kit_hf_checkpoint().__file__ == hf_checkpoint.__file__
    assert hf_gemma2.hf_config_from(flops.GEMMA2_2B, dtype="bfloat16") == hf_checkpoint.hf_config_from(
        flops.GEMMA2_2B, torch_dtype="bfloat16"
    )


def test_bench_config_needs_no_keras():
    """The HF side's child process stays free of Keras/JAX (its load time and peak memory are measured)."""
    code = (
        "import sys; sys.path.insert(0, 'bench'); import hf_gemma2, flops; "
        "hf_gemma2.hf_config_from(flops.GEMMA2_2B); "
        "print(sorted(m for m in ('keras', 'keras_hub', 'jax') if m in sys.modules))"
    )
    # cwd=ROOT puts this checkout's kit first on sys.path, as for the bench's children.
    proc = subprocess.run([sys.executable, "-c", code], cwd=BENCH.parent, capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_2b_flops_figures():
    n = flops.matmul_params(flops.GEMMA2_2B)
    assert n == 26 * (2304 * 2048 * 2 + 2304 * 1024 * 2 + 3 * 2304 * 9216) + 256000 * 2304
    per_token = flops.train_flops_per_token(flops.GEMMA2_2B, 512, 8, ("query", "value"))
    assert per_token == 4 * n + 6 * flops.lora_macs(flops.GEMMA2_2B, 8, ("query", "value")) + 12 * 26 * 8 * 256 * 512
    # An H100 at 40 % MFU would train ≈ 36.7k tokens/s of Gemma 2 2B LoRA at seq 512.
    assert 36_000 < 0.4 * flops.peak_flops("NVIDIA H100 80GB HBM3") / per_token < 37_500
    with pytest.raises(ValueError, match="Unknown LoRA target"):
        flops.lora_params(flops.GEMMA2_2B, 8, ("q_proj",))


def test_both_sides_build_the_same_architecture(tiny_preset):
    """Same parameter count (tied embeddings counted once), same LoRA sizes as `flops` predicts."""
    pytest.importorskip("peft")
    import hf_gemma2 as hf
    from sides import preset_backbone_config

    from kit.model import enable_lora, load_causal_lm, parameter_counts

    cfg = preset_backbone_config(tiny_preset)
    lm = load_causal_lm(str(tiny_preset), dtype="float32")
    total = parameter_counts(lm)["total"]
    model = hf.build_model(cfg, dtype="float32", device="cpu")
    assert sum(p.numel() for p in model.parameters()) == total
    enable_lora(lm, rank=4, alpha=8.0, targets="all")
    assert parameter_counts(lm)["trainable"] == flops.lora_params(cfg, 4, ALL, style="keras")
    peft_model = hf.add_lora(model, rank=4, alpha=8.0, targets=ALL)
    assert peft_model.get_nb_trainable_parameters()[0] == flops.lora_params(cfg, 4, ALL, style="peft")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "2b"], "--size 2b needs --random-init"),
        (["--padding", "nope"], "--padding takes"),
        (["--sides", "tf"], "--sides takes"),
        (["--steps", "0"], "--steps must be"),
        (["--data", "synthetic", "--padding", "buckets"], "use --padding fixed"),
    ],
)
def test_train_flags_refused(argv, message, capsys):
    assert train_throughput.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "2b"], "--size 2b needs --random-init"),
        (["--batch-sizes", "1,x"], "--batch-sizes takes integers"),
        (["--batch-sizes", "0"], "--batch-sizes must be"),
        (["--run", "runs/no-such-run", "--data", "no/such/data"], "make demo"),
    ],
)
def test_generate_flags_refused(argv, message, capsys):
    assert generate_throughput.main(argv) == 2
    assert message in capsys.readouterr().err


def test_gpu_mode_defaults():
    a = train_throughput.resolve(train_throughput.parse_args(["--device", "gpu", "--size", "2b", "--random-init"]))
    assert (a.batch_size, a.max_length, a.targets, a.dtype, a.data, a.padding) == (
        8,
        512,
        "qv",
        "bfloat16",
        "synthetic",
        ("fixed",),
    )
    assert a.out.endswith("train_throughput_gpu_2b.json")
    g = generate_throughput.resolve(
        generate_throughput.parse_args(["--device", "gpu", "--size", "2b", "--random-init"])
    )
    assert g.out.endswith("generate_throughput_gpu_2b.json") and g.dtype == "bfloat16"


def test_gpu_mode_without_a_gpu_fails_in_one_line(tmp_path, capsys):
    jax = pytest.importorskip("jax")
    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present")
    out = tmp_path / "r.json"
    argv = ["--device", "gpu", "--size", "2b", "--random-init", "--sides", "kit", "--out", str(out)]
    assert train_throughput.main(argv) == 2
    err = capsys.readouterr().err
    assert "JAX sees no GPU" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_train_smoke_on_the_micro_model(tiny_preset, tiny_prepared, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "train.json"
    argv = [
        "--preset",
        str(tiny_preset),
        "--data",
        str(tiny_prepared),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--max-length",
        "128",
        "--auto-buckets",
        "2",
        "--hf-weights",
        "random",
        "--threads",
        "1",
        "--padding",
        "buckets,dynamic",
        "--out",
        str(out),
    ]
    assert train_throughput.main(argv) == 0
    r = json.loads(out.read_text())
    assert set(r["sides"]) == {"kit", "hf"}
    kit, hf = r["sides"]["kit"]["modes"]["buckets"], r["sides"]["hf"]["modes"]["buckets"]
    assert kit["tokens"] == hf["tokens"] and kit["real_tokens"] == hf["real_tokens"]  # the same batches
    assert kit["recompiles_while_timed"] == 0
    assert "dynamic" in r["sides"]["hf"]["modes"] and "dynamic" not in r["sides"]["kit"]["modes"]
    assert r["ratio_kit_over_hf"]["buckets"] > 0 and r["machine"]["packages"]["torch"]


@pytest.mark.slow
def test_levers_memory_on_a_tiny_gemma_compiles_for_a_tpu_chip(tmp_path):
    """bench/levers_memory.py end to end at a tiny size: the first and the last row (about 30 s)."""
    pytest.importorskip("libtpu")
    import levers_memory

    out = tmp_path / "levers.json"
    argv = ["--size", "tiny", "--length", "32", "--rows", "0,4", "--out", str(out)]
    assert levers_memory.main(argv) == 0
    r = json.loads(out.read_text())
    before, after = r["rows"]
    assert before["quantize"] == "none" and after["quantize"].startswith("int8") and after["remat"] == "blocks"
    # the int8 base holds a quarter of the float32 kernels' bytes: the arguments shrink
    assert 0 < after["arguments"] < before["arguments"]
    assert r["target"]["platform"] == "tpu" and r["machine"]["packages"]["jax"]


@pytest.mark.slow
def test_step_2b_cpu_on_a_tiny_gemma_loads_the_same_weights_on_both_sides(tmp_path):
    """bench/step_2b_cpu.py end to end at a tiny size (three child processes, about 40 s)."""
    pytest.importorskip("peft")
    import step_2b_cpu

    out = tmp_path / "step.json"
    assert (
        step_2b_cpu.main(["--size", "tiny", "--length", "32", "--steps", "1", "--threads", "1", "--out", str(out)]) == 0
    )
    r = json.loads(out.read_text())
    kit, hf = r["sides"]["kit"], r["sides"]["hf"]
    # the same random weights and the same masked batch: the first step's loss agrees
    assert abs(kit["first_loss"] - hf["first_loss"]) < 1e-3 * hf["first_loss"]
    assert kit["step_s"] > 0 and hf["step_s"] > 0 and kit["peak_rss_mib"] > 0 and hf["peak_rss_mib"] > 0


@pytest.mark.slow
def test_int8_loss_on_the_micro_model(tiny_preset, tiny_prepared, tmp_path):
    """bench/int8_loss.py end to end on the micro model: two 3-step fine-tunes."""
    import int8_loss

    out = tmp_path / "int8.json"
    argv = ["--preset", str(tiny_preset), "--data", str(tiny_prepared), "--steps", "3", "--out", str(out)]
    argv += ["--set", "data.buckets=[64, 128]", "--set", "data.auto_buckets=0", "--set", "train.batch_size=8"]
    assert int8_loss.main(argv) == 0
    r = json.loads(out.read_text())
    none, int8 = r["runs"]
    assert (none["quantize"], int8["quantize"]) == ("none", "int8")
    assert none["initial_val_loss"] != int8["initial_val_loss"]  # the int8 base is not the float one
    assert abs(none["initial_val_loss"] - int8["initial_val_loss"]) < 0.1 * none["initial_val_loss"]
